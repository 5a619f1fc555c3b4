"""The default model's ensemble (``ner_model.ensemble``): members' emissions averaged, their CRFs averaged into one that
the server's ordinary Viterbi decodes exactly, one lexicon table for all members, the RaNER-style checkpoint outside
(loaded and exported by the project's exporter like any other checkpoint)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from ner_pipeline.crf import CrfParameters, viterbi
from ner_model.architecture import LacBiGruCrf
from ner_model.data import write_tokenizer_files
from ner_model.ensemble import LacBiGruCrfEnsemble, load_tagger
from training import data as D
from training.lexicon import build_tables

pytestmark = pytest.mark.unit

WORDS = ["张三", "北京", "北京大学", "访问"]
TEXTS = ["张三访问北京大学", "北京", "中华人民共和国国务院新闻办公室今天举行新闻发布会。"]


def _member(seed: int, tables, buckets: int = 256) -> LacBiGruCrf:
    """A tiny member whose lexicon projections are non-zero, so that a lost or mixed-up table changes its scores."""
    torch.manual_seed(seed)
    config = {"vocab_size": 21128, "embedding_dim": 16, "hidden_size": 8, "num_attention_layers": 1,
              "attention_heads": 2, "attention_ffn": 16, "num_labels": 7, "lexicon_buckets": buckets,
              "id2label": {str(i): l for i, l in enumerate(D.LABELS)}, "label2id": {l: i for i, l in enumerate(D.LABELS)}}
    model = LacBiGruCrf(config).eval()
    tables.load_into(model.lexicon)
    with torch.no_grad():
        model.lexicon_in.weight.normal_()
        model.lexicon_out.weight.normal_()
        for p in model.crf.parameters():
            p.normal_()
    return model


@pytest.fixture(scope="module")
def tables(default_tokenizer):
    ids = default_tokenizer(WORDS, add_special_tokens=False)["input_ids"]
    return build_tables([(i, 1 << (k % 4)) for k, i in enumerate(ids)], 256)


@pytest.fixture(scope="module")
def members(tables):
    return [_member(1, tables), _member(2, tables)]


def _batch(default_tokenizer, texts):
    enc = default_tokenizer(texts, padding=True, return_tensors="np")
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def _crf(module) -> CrfParameters:
    return CrfParameters(*(getattr(module.crf, n).detach().double().numpy()
                           for n in ("transitions", "start_transitions", "end_transitions")))


def _path_score(emissions, crf: CrfParameters, path) -> float:
    score = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
    score += sum(emissions[t, tag] for t, tag in enumerate(path))
    score += sum(crf.transitions[a, b] for a, b in zip(path[:-1], path[1:]))
    return float(score)


def test_emissions_are_the_members_mean_and_viterbi_finds_the_best_mean_path(members, default_tokenizer):
    ensemble = LacBiGruCrfEnsemble.from_members(members)
    ids, mask = (torch.from_numpy(a) for a in _batch(default_tokenizer, TEXTS))
    with torch.no_grad():
        got = ensemble(ids, mask)
        each = [m(ids, mask) for m in members]
    torch.testing.assert_close(got, (each[0] + each[1]) / 2)
    assert float((each[0] - each[1]).abs().max()) > 0.1  # the members do differ

    # the averaged CRF: its Viterbi path over the mean emissions maximises the mean of the members' path scores
    n = 5
    crf, member_crfs = _crf(ensemble), [_crf(m) for m in members]
    mean_em = got[0, 1:1 + n].double().numpy()
    member_em = [e[0, 1:1 + n].double().numpy() for e in each]
    best = max(itertools.product(range(7), repeat=n),
               key=lambda p: sum(_path_score(e, c, p) for e, c in zip(member_em, member_crfs)))
    assert tuple(viterbi(mean_em, crf)) == best
    path = viterbi(mean_em, crf)
    assert _path_score(mean_em, crf, path) == pytest.approx(
        np.mean([_path_score(e, c, path) for e, c in zip(member_em, member_crfs)]), abs=1e-5)


def test_checkpoint_stores_one_lexicon_and_exports(members, default_tokenizer, tmp_path):
    from safetensors.numpy import load_file

    from export.checkpoint import load_checkpoint
    from export.onnx_export import OnnxExportConfig, export_fp32, onnx_session, run_onnx
    from export.quantize import QuantizationConfig, quantize_int8

    ensemble = LacBiGruCrfEnsemble.from_members(members)
    ensemble.save_pretrained(tmp_path / "ckpt")
    write_tokenizer_files(tmp_path / "ckpt", Path(__file__).resolve().parent.parent / "models" / "default" /
                            "vocab.txt")
    keys = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert sorted(k for k in keys if k.endswith(("fingerprints", "codes"))) == ["lexicon.codes", "lexicon.fingerprints"]
    assert not any(k.startswith("crf.") for k in keys)

    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.model_type == "lac_bigru_crf_ensemble" and isinstance(loaded.model, LacBiGruCrfEnsemble)
    np.testing.assert_allclose(loaded.crf.transitions, _crf(ensemble).transitions, atol=1e-6)
    assert load_tagger(tmp_path / "ckpt").config["members"][1]["lexicon_buckets"] == 256

    ids, mask = _batch(default_tokenizer, TEXTS)
    with torch.no_grad():
        ref = ensemble(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(loaded.model(torch.from_numpy(ids), torch.from_numpy(mask)).detach().numpy(), ref,
                               atol=1e-6)
    fp32 = export_fp32(loaded.model, tmp_path / "fp32.onnx", OnnxExportConfig())
    assert np.abs(run_onnx(onnx_session(fp32), ids, mask) - ref).max() <= 1e-4
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", QuantizationConfig(),
                         calibration=[{"input_ids": ids, "attention_mask": mask}])
    assert np.abs(run_onnx(onnx_session(int8), ids, mask) - ref).max() < 0.5


def test_members_with_different_lexicon_tables_are_refused(members, default_tokenizer):
    other_ids = default_tokenizer(["上海", "新华社"], add_special_tokens=False)["input_ids"]
    stranger = _member(3, build_tables([(i, 2) for i in other_ids], 256))
    with pytest.raises(ValueError, match="different lexicon tables"):
        LacBiGruCrfEnsemble.from_members([members[0], stranger])


def test_removed_features_load_only_switched_off(members, tmp_path):
    """A checkpoint may name a removed feature (bigram or LAC features) switched off, as the shipped model does; one
    that switches it on is refused with the reason, not loaded into a model that would silently differ."""
    config = dict(members[0].config)
    shipped = LacBiGruCrf({**config, "bigram_buckets": 0, "bigram_dim": 64, "lac_features": 0, "lac_tags": 59})
    assert shipped.state_dict().keys() == members[0].state_dict().keys()
    for feature in ({"bigram_buckets": 4096}, {"lac_features": 1}):
        with pytest.raises(ValueError, match="does not have"):
            LacBiGruCrf({**config, **feature})
    ensemble = LacBiGruCrfEnsemble.from_members(members)
    ensemble.config["members"][1]["lac_features"] = 1
    ensemble.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="lac_features=1"):
        load_tagger(tmp_path / "ckpt")
