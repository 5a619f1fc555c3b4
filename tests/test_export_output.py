"""What the exporter says: label sets whose tags could never make an entity are refused in one line, a missing path
is called missing, and an export prints its progress and nothing else (which tokenizer files it used and why; why
bert-base-chinese's vocabulary has ids without a token; no known-harmless warnings of the tracer or the quantizer).
Real exports of a small random-weight Hugging Face BERT and of the default model, as ``python -m export`` runs them.
And the model hash each ensemble's config carries: what Triton serves, recomputed from the files, moved by every file
and parameter that shapes answers and by nothing else."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import urllib.request
from dataclasses import replace

import pytest

from export.checkpoint import CheckpointError, load_checkpoint
from export.labels import check_labels, read_json
from export.model_hash import RUNTIME_PARAMETERS, model_hash, written_hash
from export.repository import ENSEMBLES, REPO_ROOT, TEMPLATES, RepositoryConfig, write_repository
from ner_pipeline.windows import WindowConfig
from export.synthetic import labels_for
from ner_pipeline.tagging import chunk, parse_label


DEFAULT_MODEL = REPO_ROOT / "models" / "default"
PRODUCTS = ["O", "B-PRODUCT", "I-PRODUCT", "B-BRAND", "I-BRAND"]
MEDICAL_BIOES = ["O"] + [f"{p}-{t}" for t in ("DRUG", "DISEASE") for p in "BIES"]


def hugging_face_checkpoint(directory: Path, labels: list[str], tokenizer_json: bool = False) -> Path:
    """A random-weight BertForTokenClassification (2 layers, hidden 32) with its own labels and bert-base-chinese's
    vocab.txt, as a new user would save one; with ``tokenizer_json`` also the files BertTokenizer saves."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizer

    torch.manual_seed(0)
    config = BertConfig(vocab_size=21128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})
    BertForTokenClassification(config).save_pretrained(directory)
    shutil.copyfile(DEFAULT_MODEL / "vocab.txt", directory / "vocab.txt")
    if tokenizer_json:
        BertTokenizer(vocab=str(directory / "vocab.txt")).save_pretrained(str(directory))
    return directory


def export(checkpoint: Path, output: Path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
    return subprocess.run([sys.executable, "-m", "export", str(checkpoint), "--output", str(output)],
                          capture_output=True, text=True, env=environment, cwd=REPO_ROOT, timeout=600)


# ------------------------------------------------------------------------------------------- label sets


@pytest.mark.unit
def test_the_strict_chunker_cuts_a_span_whose_continuation_is_a_typo():
    """Why the typo must be refused: its entity would be served cut to its first character."""
    tags = [parse_label(label) for label in ["B-PRODUCT", "I-PRODUCTS", "I-PRODUCTS"]]
    assert chunk(tags, "BIO") == [("PRODUCT", 0, 0)]


@pytest.mark.parametrize("labels, problems", [
    (["O", "B-PRODUCT", "I-PRODUCTS", "B-BRAND", "I-BRAND"],
     ["I-PRODUCTS has no B-PRODUCTS (is it a typo of PRODUCT?)"]),
    ([label.replace("E-DISEASE", "E-DISEASES") for label in MEDICAL_BIOES],
     ["B-DISEASE has no E-DISEASE", "E-DISEASES has no B-DISEASES (is it a typo of DISEASE?)"]),
    ([label.replace("B-DRUG", "B-DRGU") for label in MEDICAL_BIOES],
     ["B-DRGU has no E-DRGU", "I-DRUG has no B-DRUG (is it a typo of DRGU?)", "E-DRUG has no B-DRUG"]),
    (["O", "B-PER", "M-PER", "E-PER", "S-PER", "M-LOC", "E-LOC", "S-LOC"], ["M-LOC has no B-LOC", "E-LOC has no B-LOC"]),
    (["O", "PER-B", "PER-I", "LOC-I"], ["LOC-I has no LOC-B"]),
])
@pytest.mark.unit
def test_tags_that_cannot_take_part_in_an_entity_are_refused_by_name(labels, problems):
    with pytest.raises(CheckpointError) as err:
        check_labels(labels, "config.json id2label")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("config.json id2label: " + "; ".join(problems) + ": ")
    assert message.endswith(f"(labels: {', '.join(labels)})")


@pytest.mark.parametrize("labels", [
    PRODUCTS,
    MEDICAL_BIOES,
    ["O", "B-DRUG", "I-DRUG", "E-DRUG", "S-DRUG", "S-DOSE"],  # a type of single words only
    ["O", "B-PER", "B-LOC", "I-LOC"],  # BIO: a type of single words only
    ["O", "PER-B", "PER-I", "LOC-B", "LOC-I"],
    ["O", "B-PER", "I-PER", "L-PER", "U-PER"],  # BILOU
    *(labels_for(scheme) for scheme in ("BIO", "BIOES", "BMES")),
])
@pytest.mark.unit
def test_label_sets_that_chunk_are_accepted(labels):
    check_labels(labels, "config.json id2label")


@pytest.mark.slow  # runs the exporter in a subprocess
def test_the_exporter_refuses_a_label_typo_in_one_line(tmp_path):
    checkpoint = hugging_face_checkpoint(tmp_path / "checkpoint", ["O", "B-PRODUCT", "I-PRODUCTS", "B-BRAND",
                                                                    "I-BRAND"])
    result = export(checkpoint, tmp_path / "repository")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {checkpoint / 'config.json'} id2label: I-PRODUCTS has no B-PRODUCTS "
                                    "(is it a typo of PRODUCT?)")
    assert "(labels: O, B-PRODUCT, I-PRODUCTS, B-BRAND, I-BRAND)" in result.stderr
    assert not (tmp_path / "repository").exists()


# ------------------------------------------------------------------------------------------- paths


@pytest.mark.slow  # runs the exporter in a subprocess
def test_a_missing_checkpoint_is_called_missing(tmp_path):
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(tmp_path / 'nowhere'))} does not exist$"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(tmp_path / 'a-file'))} is not a directory$"):
        load_checkpoint(tmp_path / "a-file")
    result = export(tmp_path / "nowhere", tmp_path / "repository")
    assert (result.returncode, result.stderr) == (2, f"error: {tmp_path / 'nowhere'} does not exist\n")


# ------------------------------------------------------------------------------------------- a whole export


def progress_only(stdout: str) -> list[str]:
    """The lines of an export's output that are not its numbered steps or their indented details."""
    return [line for line in stdout.splitlines() if not (line.startswith("[") or line.startswith("      "))]


HOLES_NOTE = ("vocab.txt repeats 53 tokens (e.g. '##s' on lines 8118 and 20925, counting from 0); each takes the id "
              "of its last line")


@pytest.mark.slow  # runs the exporter in a subprocess
def test_an_export_of_a_hugging_face_checkpoint_says_what_it_did_and_nothing_else(tmp_path):
    """Beside vocab.txt, the tokenizer.json and tokenizer_config.json that BertTokenizer saves: the exporter uses
    vocab.txt with the config's options, and says so."""
    checkpoint = hugging_face_checkpoint(tmp_path / "checkpoint", PRODUCTS, tokenizer_json=True)
    result = export(checkpoint, tmp_path / "repository")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no tracer warnings, no ONNX Runtime advice
    assert progress_only(result.stdout) == []  # nothing from tokenizers
    reason = ("tokenizer class BertTokenizer: a WordPiece vocabulary, built with its options as BertTokenizer builds "
              "it; the tokenizer.json beside it is not used")
    assert f"      tokenizer from vocab.txt + tokenizer_config.json ({reason})\n" in result.stdout
    assert f"      {HOLES_NOTE}" in result.stdout
    report = json.loads((tmp_path / "repository" / "export_report.json").read_text())
    assert report["fusion"]["applied"] and "MultiHeadAttention" in report["fusion"]["fused_operators"]
    assert report["tokenizer"]["source"] == "vocab.txt + tokenizer_config.json"
    assert report["tokenizer"]["source_reason"] == reason


@pytest.mark.slow  # runs the exporter in a subprocess
def test_an_export_of_the_default_model_prints_its_progress_only(tmp_path):
    """The project's own architecture (a GRU and attention layers) has tracer warnings of its own; it is not a
    BERT-family encoder, so its graph stays unfused, and the export says so."""
    result = export(DEFAULT_MODEL, tmp_path / "repository")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert progress_only(result.stdout) == []
    fusion = json.loads((tmp_path / "repository" / "export_report.json").read_text())["fusion"]
    assert not fusion["applied"]
    assert re.fullmatch(r"LacBiGruCrf\w* is not a BERT-family encoder \(.*\)", fusion["unfused_because"])
    assert f"keeping the FP32 graph unfused: {fusion['unfused_because']}" in result.stdout
    assert f"      {HOLES_NOTE}" in result.stdout
    assert "tokenizer from vocab.txt + tokenizer_config.json (tokenizer class BertTokenizer: " in result.stdout


# ------------------------------------------------------------------------------------------- model hash


def rewrite(served, out: Path, cfg: RepositoryConfig = RepositoryConfig(), **changes) -> dict[str, str]:
    """The served repository written again from its own files into ``out``, with ``changes`` to the inputs of
    ``write_repository``; returns each ensemble's hash, recomputed from the files."""
    source = served.repository
    inputs = {"onnx_files": {"fp32": source / "encoder_fp32" / "1" / "model.onnx",
                             "int8": source / "encoder_int8" / "1" / "model.onnx"},
              "tokenizer_json": source / "tokenizer" / "1" / "tokenizer.json",
              "labels": list(served.checkpoint.labels), "scheme": served.checkpoint.scheme,
              "crf": served.checkpoint.crf, "cfg": cfg, **changes}
    write_repository(out, **inputs)
    return hashes(out)


def hashes(repository: Path) -> dict[str, str]:
    return {ensemble: model_hash(repository, ensemble) for ensemble in ENSEMBLES}


@pytest.mark.server
def test_each_ensemble_serves_the_hash_of_its_files(served):
    served_hashes = {}
    for ensemble in ENSEMBLES:
        url = f"http://{served.http_url}/v2/models/{ensemble}/config"
        with urllib.request.urlopen(url, timeout=30) as response:
            served_hashes[ensemble] = json.loads(response.read())["parameters"]["model_hash"]["string_value"]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", served_hashes[ensemble])
        assert served_hashes[ensemble] == written_hash(served.repository, ensemble)
    assert served_hashes == hashes(served.repository)  # recomputed from the files alone
    assert served_hashes["ner"] != served_hashes["ner_fp32"]  # one hash per ensemble: their encoders differ
    assert served.report["model_hash"] == served_hashes


@pytest.mark.server
def test_the_hash_moves_with_what_shapes_answers_and_nothing_else(served, tmp_path):
    base = rewrite(served, tmp_path / "base")
    assert base == {e: written_hash(served.repository, e) for e in ENSEMBLES}  # the same inputs, the same hash

    # Not the export report, Python's bytecode caches, instance counts, threads, queues or the response cache.
    (tmp_path / "base" / "export_report.json").write_text('{"anything": 1}')
    cache = tmp_path / "base" / "decoder" / "1" / "ner_pipeline" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "tagging.cpython-311.pyc").write_bytes(b"not really")
    assert hashes(tmp_path / "base") == base
    tuned = RepositoryConfig(encoder_instances=1, intra_op_threads=2, fp32_encoder_instances=1,
                             tokenizer_instances=1, decoder_instances=1, max_queue_size=16, response_cache=False)
    assert rewrite(served, tmp_path / "tuned", tuned) == base

    # Labels, CRF, windows, limits: both ensembles.
    labels = list(served.checkpoint.labels)
    for name, changes in [("labels", {"labels": labels[:1] + labels[:0:-1]}), ("crf", {"crf": None}),
                          ("window", {"cfg": RepositoryConfig(window=replace(WindowConfig(), overlap_tokens=64))}),
                          ("limit", {"cfg": RepositoryConfig(max_texts_per_request=8)})]:
        changed = rewrite(served, tmp_path / name, **changes)
        assert all(changed[e] != base[e] for e in ENSEMBLES), name

    # An ONNX file: only the ensemble that runs it.
    int8_as_fp32 = {"fp32": served.repository / "encoder_fp32" / "1" / "model.onnx",
                    "int8": served.repository / "encoder_fp32" / "1" / "model.onnx"}
    changed = rewrite(served, tmp_path / "onnx", onnx_files=int8_as_fp32)
    assert changed["ner"] != base["ner"] and changed["ner_fp32"] == base["ner_fp32"]

    # Code and tokenizer, edited in place: the hash recomputed from the files moves, and the config's is then stale.
    # The decoder is both ensembles' last step; in the fused form each text encoder has its own copy of the tokenizer.
    steps = tmp_path / "steps"
    rewrite(served, steps, RepositoryConfig(pipeline="steps"))
    root = tmp_path / "base"
    assert (root / "text_encoder_int8").is_dir() and not (steps / "text_encoder_int8").exists()
    for path, moved in [(root / "text_encoder_int8" / "1" / "model.py", {"ner"}),
                        (root / "text_encoder_fp32" / "1" / "tokenizer.json", {"ner_fp32"}),
                        (root / "tokenizer" / "1" / "tokenizer.json", set()),
                        (root / "decoder" / "1" / "ner_pipeline" / "tagging.py", {"ner", "ner_fp32"}),
                        (steps / "encoder_int8" / "1" / "model.py", {"ner"}),
                        (steps / "decoder" / "1" / "ner_pipeline" / "tagging.py", {"ner", "ner_fp32"}),
                        (steps / "tokenizer" / "1" / "tokenizer.json", {"ner", "ner_fp32"})]:
        repository = root if root in path.parents else steps
        before = hashes(repository)
        with open(path, "ab") as f:
            f.write(b" ")
        after = hashes(repository)
        assert {e for e in ENSEMBLES if after[e] != before[e]} == moved, path
    for repository in (root, steps):
        assert hashes(repository) != {e: written_hash(repository, e) for e in ENSEMBLES}


@pytest.mark.unit
def test_every_parameter_left_out_of_the_hash_is_one_a_template_writes():
    """A renamed speed or memory parameter would otherwise count in the hash without anyone noticing."""
    written = set()
    for template in TEMPLATES.glob("*/config*.pbtxt"):
        written |= set(re.findall(r'parameters \{ key: "([^"]+)"', template.read_text()))
    assert RUNTIME_PARAMETERS <= written, RUNTIME_PARAMETERS - written
    assert "model_hash" in written and not RUNTIME_PARAMETERS & {"labels", "scheme", "crf", "window_tokens",
                                                                  "overlap_tokens", "max_text_chars", "precision"}


# ------------------------------------------------------------------------------------------- whitespace
@pytest.mark.server
def test_whitespace_reaches_the_model_as_the_checkpoints_whitespace_token(served):
    """Every served tokenizer gives each whitespace character a word of its own, the checkpoint's token, at its own
    offset: a space or line break between two names is something the model can see. The token's text typed in a text
    is read as the characters it is made of, in any case."""
    from ner_model.data import WHITESPACE_TOKEN
    from ner_pipeline import load_tokenizer

    directory = served.checkpoint.directory
    assert read_json(directory / "tokenizer_config.json")["whitespace_token"] == WHITESPACE_TOKEN
    whitespace_id = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n").index(WHITESPACE_TOKEN)
    text = "张三 李四\n王五\u3000赵六\t\u00a0。 "
    spaces = [i for i, c in enumerate(text) if c.isspace()]
    typed = "张三[unused1]李四 [UNUSED1]"
    files = sorted(served.repository.rglob("tokenizer.json"))
    assert files
    for path in files:
        tokenizer = load_tokenizer(str(path))
        encoding = tokenizer.encode(text, add_special_tokens=False)
        assert len(set(encoding.word_ids)) == len(text), path
        at = {start: token for token, (start, _) in zip(encoding.ids, encoding.offsets)}
        assert [i for i, token in at.items() if token == whitespace_id] == spaces, path
        assert [text[i] for i, token in at.items() if token != whitespace_id] == [c for c in text
                                                                                  if not c.isspace()], path
        encoding = tokenizer.encode(typed, add_special_tokens=False)
        assert [start for token, (start, _) in zip(encoding.ids, encoding.offsets)
                if token == whitespace_id] == [typed.index(" ")], path
        for start in (2, typed.rindex("[")):
            pieces = [token for token, (offset, _) in zip(encoding.tokens, encoding.offsets)
                      if start <= offset < start + 9]
            assert "".join(piece.removeprefix("##") for piece in pieces) == "[unused1]", path


@pytest.mark.unit
def test_a_whitespace_token_outside_the_vocabulary_is_refused(tmp_path):
    from export.tokenizer_files import load_tokenizer
    from ner_model.data import vocab_file, write_tokenizer_files

    write_tokenizer_files(tmp_path, vocab_file())
    config = read_json(tmp_path / "tokenizer_config.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "whitespace_token": "[SPACE]"}))
    with pytest.raises(CheckpointError, match=r"whitespace_token '\[SPACE\]' is not a token of the vocabulary"):
        load_tokenizer(tmp_path)
