"""export.quantize: the smoothing before static INT8 changes no FP32 answer, and the static INT8 built on it gives a
row the same scores alone and in a call (tiny random BERT, exported by the project's exporter, as exported and with
ONNX Runtime's transformer fusions, whose SkipLayerNormalization outputs are smoothed like LayerNorm outputs)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import torch

from export.onnx_export import OnnxExportConfig, export_fp32, onnx_session, run_onnx
from export.optimize import GraphOptimizationConfig, fuse_fp32
from export.quantize import QuantizationConfig, quantize_int8, smooth_activations
from test_perf_models import tiny_bert

pytestmark = pytest.mark.unit

@pytest.fixture(scope="module", params=["unfused", "fused"])
def exported(tmp_path_factory, request):
    root = tmp_path_factory.mktemp(f"quantize-{request.param}")
    model = tiny_bert()
    torch.manual_seed(1)
    for layer in model.bert.encoder.layer:  # channels of very different ranges, as trained BERTs have
        layer.attention.output.LayerNorm.weight.data = torch.exp(torch.randn(32) * 1.5)
    fp32 = export_fp32(model, root / "fp32.onnx", OnnxExportConfig())
    if request.param == "fused":
        fused = fuse_fp32(fp32, root / "fused.onnx", GraphOptimizationConfig(num_heads=2, hidden_size=32))
        assert fused["SkipLayerNormalization"] >= 4
        fp32 = root / "fused.onnx"
    rng = np.random.default_rng(0)
    rows = []
    for width in (12, 30, 7, 64):  # calls of other widths, padded rows among them, as the tokenizer lays them out
        ids = rng.integers(100, 21128, size=(3, width))
        mask = np.ones_like(ids)
        mask[1, width // 2 :] = 0
        ids[mask == 0] = 0
        rows.append({"input_ids": ids, "attention_mask": mask})
    return root, fp32, rows


def test_smoothing_keeps_the_fp32_function_and_scales_the_layer_norm_outputs(exported):
    root, fp32, rows = exported
    smoothed = smooth_activations(fp32, root / "smoothed.onnx", rows, alpha=0.5)
    assert smoothed != fp32
    muls = [n for n in onnx.load(str(smoothed), load_external_data=False).graph.node if n.name.endswith("/smooth")]
    assert len(muls) == 4  # each layer's two LayerNorm outputs that feed weight MatMuls (QKV, FFN in)
    for inputs in rows:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        assert np.abs(run_onnx(onnx_session(smoothed), ids, mask) - run_onnx(onnx_session(fp32), ids, mask)).max() < 1e-4
    assert smooth_activations(fp32, root / "none.onnx", rows, alpha=0.0) == fp32


def test_static_int8_with_smoothing_is_batch_independent_and_close(exported):
    root, fp32, rows = exported
    int8 = quantize_int8(fp32, root / "int8.onnx", QuantizationConfig(), rows)
    assert not (root / "int8.onnx.smoothed-fp32.onnx").exists()  # the intermediate graph is not left behind
    session, reference = onnx_session(int8), onnx_session(fp32)
    ids, mask = rows[0]["input_ids"], rows[0]["attention_mask"]
    together = run_onnx(session, ids, mask)
    for i in range(ids.shape[0]):
        alone = run_onnx(session, ids[i : i + 1], mask[i : i + 1])
        assert np.abs(alone[0] - together[i]).max() <= 1e-5
    assert np.abs(together - run_onnx(reference, ids, mask)).max() < 0.5
