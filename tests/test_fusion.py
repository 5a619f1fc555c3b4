"""export.optimize: the tiny BERT + CRF checkpoint of the test session (trained to tag a lexicon), exported by the
project's exporter with ONNX Runtime's transformer fusions (the default) and with --no-fuse. The fused encoder holds
the fused operators and matches PyTorch, also on masks a right-padding shortcut would get wrong; its static INT8
quantizes the same weight GEMMs and SmoothQuant pairs, agrees with FP32 as the unfused one does and does not depend on
its batch; --no-fuse writes the graph the exporter writes without fusion; other models and the native backend keep
the unfused graph; the run cost derived from a fused graph is the unfused one's."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from conftest import tiny_checkpoint
from export.checkpoint import load_checkpoint
from export.cli import SETTINGS, configs
from export.native import unloadable
from export.onnx_export import OnnxExportConfig, export_fp32, max_abs_difference, onnx_session, run_onnx
from export.optimize import (CONTRIB_DOMAIN, GraphOptimizationConfig, for_model, fused_operators,
                             without_identity_slices)
from export.pipeline import export_checkpoint
from export.repository import REPO_ROOT, RepositoryConfig
from export.run_cost import graph_run_cost

pytestmark = pytest.mark.slow  # trains the tiny model once (cached) and exports it four times

FP32 = ("encoder_fp32", "1", "model.onnx")
INT8 = ("encoder_int8", "1", "model.onnx")
# The tiny model: 2 layers, 2 heads, width 64.
EXPECTED = {"BiasGelu": 2, "MultiHeadAttention": 2, "SkipLayerNormalization": 4}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    checkpoint = tiny_checkpoint("BIO", crf=True)
    root = tmp_path_factory.mktemp("fusion")
    fused = export_checkpoint(checkpoint, root / "fused", RepositoryConfig())
    unfused = export_checkpoint(checkpoint, root / "unfused", RepositoryConfig(),
                                fusion_cfg=GraphOptimizationConfig(enabled=False))
    return checkpoint, root, fused, unfused


def rows_with_odd_masks(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Calls of several widths: right padding, left padding, a gap inside a row, a row alone."""
    rng = np.random.default_rng(seed)
    rows = []
    for width in (5, 23, 64):
        ids = rng.integers(1000, 8000, size=(3, width))
        mask = np.ones_like(ids)
        mask[1, width // 2 :] = 0  # right padding
        mask[2, : width // 3] = 0  # left padding
        ids[mask == 0] = 0
        rows += [(ids, mask), (ids[:1], mask[:1])]
    gap = np.ones((1, 16), dtype=np.int64)
    gap[0, 6:9] = 0
    rows.append((rng.integers(1000, 8000, size=(1, 16)) * gap, gap))
    return rows


def int8_matmuls(path) -> int:
    """MatMuls of a dequantized activation by a dequantized initializer: the weight GEMMs static INT8 runs in 8 bits
    (a weight dequantized alone runs in FP32)."""
    graph = onnx.load(str(path)).graph
    initializers = {t.name for t in graph.initializer}
    dequantized = {n.output[0]: n.input[0] in initializers for n in graph.node if n.op_type == "DequantizeLinear"}
    return sum(n.op_type == "MatMul" and dequantized.get(n.input[1]) is True and dequantized.get(n.input[0]) is False
               for n in graph.node)


def contrib_operators(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node if n.domain == CONTRIB_DOMAIN}


def test_the_fused_export_holds_the_fused_operators_and_matches_pytorch(exports):
    checkpoint, root, fused, _ = exports
    fusion = fused["fusion"]
    assert fusion["applied"] and (fusion["num_heads"], fusion["hidden_size"]) == (2, 64)
    assert fusion["fused_operators"] == EXPECTED
    assert fused_operators(root.joinpath("fused", *FP32)) == EXPECTED
    assert fused["parity_max_abs_logit_diff"] <= 1e-4 and fusion["unfused_parity_max_abs_logit_diff"] <= 1e-4
    model = load_checkpoint(checkpoint).model
    assert max_abs_difference(model, onnx_session(root.joinpath("fused", *FP32)), rows_with_odd_masks()) <= 1e-4


def test_static_int8_of_the_fused_graph_quantizes_the_same_gemms_and_agrees_as_before(exports):
    _, root, fused, unfused = exports
    fused_int8, unfused_int8 = root.joinpath("fused", *INT8), root.joinpath("unfused", *INT8)
    assert contrib_operators(fused_int8) == set(EXPECTED)
    # Q, K, V, attention output, FFN in and out per layer (the label head stays FP32).
    assert int8_matmuls(fused_int8) == int8_matmuls(unfused_int8) == 2 * 6
    smoothing = [[n for n in onnx.load(str(path)).graph.node if n.name.endswith("/smooth")]
                 for path in (fused_int8, unfused_int8)]
    assert len(smoothing[0]) == len(smoothing[1]) == 4  # each layer's QKV and FFN-in inputs
    assert fused["int8_label_agreement"] >= unfused["int8_label_agreement"] - 0.005
    assert fused["int8_label_agreement"] >= 0.98


def test_static_int8_of_the_fused_graph_is_batch_independent(exports):
    _, root, _, _ = exports
    session = onnx_session(root.joinpath("fused", *INT8))
    for ids, mask in rows_with_odd_masks(1):
        together = run_onnx(session, ids, mask)
        for i in range(ids.shape[0]):
            alone = run_onnx(session, ids[i : i + 1], mask[i : i + 1])
            real = mask[i].astype(bool)
            assert np.abs(alone[0][real] - together[i][real]).max() <= 1e-5


def test_no_fuse_writes_the_graph_of_the_plain_export(exports, tmp_path):
    checkpoint, root, _, unfused = exports
    assert not unfused["fusion"]["applied"] and unfused["fusion"]["unfused_because"] == "turned off (--no-fuse)"
    written = onnx.load(str(root.joinpath("unfused", *FP32))).graph
    plain = onnx.load(str(export_fp32(load_checkpoint(checkpoint).model, tmp_path / "plain.onnx",
                                      OnnxExportConfig()))).graph
    assert [n.op_type for n in written.node] == [n.op_type for n in plain.node]
    assert not contrib_operators(root.joinpath("unfused", *FP32)) | contrib_operators(root.joinpath("unfused", *INT8))
    for argv, cfg in (([], GraphOptimizationConfig()), (["--no-fuse"], GraphOptimizationConfig(enabled=False))):
        assert configs(SETTINGS.parse([str(checkpoint), *argv], "python -m export"))[4] == cfg


def test_the_run_cost_of_a_fused_graph_is_the_unfused_one(exports, tmp_path):
    """Also with ONNX Runtime's Attention operator, which holds the Q, K and V weights itself."""
    from onnxruntime.transformers.optimizer import optimize_model

    _, root, _, _ = exports
    for encoder in (FP32, INT8):
        fused, unfused = (graph_run_cost(root.joinpath(variant, *encoder)) for variant in ("fused", "unfused"))
        assert fused.per_token == pytest.approx(unfused.per_token) and fused.per_run == pytest.approx(unfused.per_run)
    packed = tmp_path / "attention.onnx"
    optimize_model(without_identity_slices(onnx.load(str(root.joinpath("unfused", *FP32)))), "bert", num_heads=2,
                   hidden_size=64, opt_level=0).save_model_to_file(str(packed))
    assert "Attention" in fused_operators(packed)
    assert graph_run_cost(packed).per_token == pytest.approx(graph_run_cost(root.joinpath("unfused", *FP32)).per_token)


def test_the_native_backend_and_other_models_keep_the_unfused_graph(exports, tmp_path):
    checkpoint, _, _, _ = exports
    report = export_checkpoint(checkpoint, tmp_path / "native", RepositoryConfig(encoder_backend="onnxruntime"))
    assert not report["fusion"]["applied"] and "native" in report["fusion"]["unfused_because"]
    for encoder in (FP32, INT8):
        assert unloadable(tmp_path.joinpath("native", *encoder)) == []
    default = load_checkpoint(REPO_ROOT / "models" / "default").model
    cfg, reason = for_model(GraphOptimizationConfig(), default, "python")
    assert reason.endswith("is not a BERT-family encoder (bert, camembert, electra, roberta, xlm-roberta)")
    assert cfg.num_heads == 0


def test_the_perf_comparison_reports_fused_against_unfused(exports, tmp_path):
    """perf.fusion.run, on a few texts: both exports' checks, and a speed for every graph and batch size."""
    from perf.fusion import run
    from perf.models import ModelSpec

    checkpoint, _, _, _ = exports
    texts = ["张三在北京的清华大学读书。", "李四从乌鲁木齐出发沿长江而下。", "联合国秘书长访问上海。"] * 6
    result = run(ModelSpec("tiny", checkpoint, "tiny BERT", "bert"), texts, work_dir=tmp_path, log=lambda _: None)
    assert result["fused"] and result["fusion"]["fused_operators"] == EXPECTED
    assert max(result["parity_max_abs_logit_diff"].values()) <= 1e-4
    assert min(result["int8_label_agreement"].values()) >= 0.98
    for graph in ("fp32", "int8"):
        for variant in ("fused", "unfused"):
            assert result["texts_per_s"][graph][variant]["batch_1"] > 0
            assert result["texts_per_s"][graph][variant]["batch_8"] > 0
        assert set(result["speedup"][graph]) == {"batch_1", "batch_8"}
