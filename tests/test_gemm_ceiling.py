"""perf.gemm_ceiling: the INT8 GEMM it measures runs as the export's static INT8 does, a model's weight multiply-adds
per token come out of its graphs exactly, and the ceiling prices an INT8 build's FP32 part at the FP32 rate (tiny
random BERT, exported and quantized by the project's exporter)."""

from __future__ import annotations

import numpy as np
import pytest

from export.onnx_export import OnnxExportConfig, export_fp32
from export.quantize import QuantizationConfig, quantize_int8
from perf import gemm_ceiling
from test_perf_models import tiny_bert

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("gemm_ceiling")
    model = tiny_bert()
    fp32 = export_fp32(model, root / "fp32.onnx", OnnxExportConfig())
    rng = np.random.default_rng(0)
    rows = [{"input_ids": rng.integers(100, 21128, size=(2, width)), "attention_mask": np.ones((2, width), np.int64)}
            for width in (9, 24)]
    return model.config, fp32, quantize_int8(fp32, root / "int8.onnx", QuantizationConfig(), rows)


def test_the_measured_int8_gemm_is_the_one_static_int8_runs(builds):
    config, _, int8 = builds
    measured = gemm_ceiling.optimized_ops(gemm_ceiling.layer_graph("int8").SerializeToString())
    assert measured == {"QLinearMatMul": len(gemm_ceiling.LAYER_GEMMS)}
    served = gemm_ceiling.optimized_ops(int8.read_bytes())
    assert served["QLinearMatMul"] == 6 * config.num_hidden_layers  # Q, K, V, output, feed-forward pair
    assert "MatMulIntegerToFloat" not in served and "MatMulInteger" not in served


def test_weight_multiply_adds_per_token_from_the_graphs(builds):
    config, fp32, int8 = builds
    h = config.hidden_size
    encoder = config.num_hidden_layers * (4 * h * h + 2 * h * config.intermediate_size)
    head = h * config.num_labels  # kept in FP32 by the quantizer
    assert gemm_ceiling.model_macs_per_token(fp32, int8) == {"fp32": encoder + head,
                                                             "int8": {"int8": encoder, "fp32": head}}


def test_the_ceiling_prices_each_part_at_its_rate_at_m_2048_and_2_threads():
    points = [{"precision": p, "threads": t, "tokens": m, "macs_per_s": r * t * m / 2048}
              for p, r in (("int8", 4e11), ("fp32", 1e11)) for t in (1, 2) for m in (512, 2048)]
    macs = {"fp32": 85_000_000, "int8": {"int8": 84_000_000, "fp32": 1_000_000}}
    c = gemm_ceiling.ceiling({"points": points}, macs, [40, 60], {"int8": 50.0, "fp32": 12.0})
    # INT8: 84 M / 8e11 + 1 M / 2e11 = 1.1e-4 s per token; FP32: 85 M / 2e11 = 4.25e-4 s; 50 tokens per text.
    assert c["tokens_per_s"] == {"int8": 9090.9, "fp32": 2352.9}
    assert c["texts_per_s"] == {"int8": 181.82, "fp32": 47.06}
    assert c["share"] == {"int8": 0.275, "fp32": 0.255}
