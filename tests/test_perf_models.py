"""perf/models.py: the BERT-base stand-in's head is calibrated to MSRA train's entity rate, and the INT8 builds the
suite measures beside the served one are quantized from the export's FP32 file as the exporter would (checked on a
tiny random BERT of the same form, so it runs in seconds)."""

from __future__ import annotations

import onnx
import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForTokenClassification

from export.pipeline import export_checkpoint
from export.quantize import QuantizationConfig
from export.repository import RepositoryConfig
from ner_model.data import msra_file, read_bio, vocab_file, write_tokenizer_files
from export.synthetic import constraint_crf
from perf import baselines, models
from perf.models import BIO_LABELS, entity_rate_bias
from perf.texts import msra_sentences

pytestmark = pytest.mark.unit


def tiny_bert() -> BertForTokenClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=21128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, id2label=dict(enumerate(BIO_LABELS)),
                        label2id={label: i for i, label in enumerate(BIO_LABELS)})
    return BertForTokenClassification(config).eval()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("checkpoint")
    tiny_bert().save_pretrained(checkpoint)
    write_tokenizer_files(checkpoint, vocab_file())
    save_file({k: torch.from_numpy(v) for k, v in constraint_crf(BIO_LABELS, "BIO").items()},
              str(checkpoint / "crf.safetensors"))
    out = tmp_path_factory.mktemp("export") / "repository"
    export_checkpoint(checkpoint, out, RepositoryConfig())
    return out


def test_entity_rate_bias_matches_msra_train_rate(tmp_path):
    model = tiny_bert()
    with torch.no_grad():  # a head that, unshifted, tags far more entities than MSRA has
        model.classifier.bias.copy_(torch.tensor([-2.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    write_tokenizer_files(tmp_path, vocab_file())
    crf = constraint_crf(BIO_LABELS, "BIO")

    shift, rate, target = entity_rate_bias(model, tmp_path, crf, sentences=60)

    train = read_bio(msra_file("train"))
    expected = sum(tag.startswith("B-") for _, tags in train for tag in tags) / len(train)
    assert abs(target - expected) < 1e-9 and 1.0 < expected < 2.5
    assert shift > 0.5  # the O logit had to rise
    assert abs(rate - target) < 0.3, (rate, target)


def test_a_static_variant_is_calibrated_as_the_export_is(export_dir, monkeypatch):
    """With the export's own configuration, the variant is the export's INT8 file byte for byte: same calibration
    texts, tokenizer and windows. Built once, then taken from the export's folder."""
    monkeypatch.setitem(models.INT8_VARIANTS, "as_exported", QuantizationConfig())
    path = models.int8_variant_onnx(export_dir, "as_exported", log=lambda message: None)
    assert path.parent == export_dir
    assert path.read_bytes() == (export_dir / "encoder_int8" / "1" / "model.onnx").read_bytes()
    written = path.stat().st_mtime_ns
    assert models.int8_variant_onnx(export_dir, "as_exported", log=lambda message: None) == path
    assert path.stat().st_mtime_ns == written


def test_dynamic_scores_depend_on_the_batch_and_static_ones_do_not(export_dir):
    files = {"fp32": export_dir / "encoder_fp32" / "1" / "model.onnx",
             "int8": export_dir / "encoder_int8" / "1" / "model.onnx",
             **{f"int8_{name}": models.int8_variant_onnx(export_dir, name, log=lambda message: None)
                for name in ("dynamic", "reduce_range")}}
    ops = {name: {node.op_type for node in onnx.load(str(path)).graph.node} for name, path in files.items()}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops["int8_dynamic"] and "QuantizeLinear" not in ops["int8_dynamic"]
    assert "QuantizeLinear" in ops["int8_reduce_range"] and "MatMulInteger" not in ops["int8_reduce_range"]
    assert files["int8_reduce_range"].read_bytes() != files["int8"].read_bytes()

    texts = [s.text for s in msra_sentences(8)]
    dependence = baselines.batch_dependence(files, export_dir / "tokenizer" / "1" / "tokenizer.json", texts)
    changes = dependence["max_abs_logit_change"]
    assert dependence["rows"] == 8
    assert max(changes["fp32"], changes["int8"], changes["int8_reduce_range"]) <= 1e-4, changes
    assert changes["int8_dynamic"] > 1e-3, changes

    agreement = baselines.int8_label_agreement(files, export_dir, texts)
    assert set(agreement) == {"int8", "int8_dynamic", "int8_reduce_range"}
    assert all(0.9 < share <= 1.0 for share in agreement.values()), agreement
