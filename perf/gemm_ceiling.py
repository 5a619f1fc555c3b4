"""The machine's GEMM ceiling: ONNX Runtime's INT8 and FP32 matrix-multiply throughput, measured where the suite runs,
and what it allows each model: the texts per second its weight GEMMs alone would take, of which the served
throughput is reported as a share.

Each measured graph holds one BERT-base layer's weight GEMMs side by side (four 768→768, one 768→3072, one 3072→768)
over M tokens. FP32: ``MatMul``. INT8: the QDQ form the export's static quantization writes (uint8 activations and
per-channel int8 weights, each through ``DequantizeLinear``, into ``MatMul``, its output through ``QuantizeLinear``),
which ONNX Runtime's graph optimisations fuse into the kernel the served graph runs, ``QLinearMatMul``; the operators
left after them are recorded (``ran_as``).
M: 2,048 tokens (``max_tokens_per_run``, the most one encoder run holds) for the ceiling, and the token counts the
server runs (one MSRA text is about 50 tokens, a few texts 256 to 512); 1 and 2 intra-op threads; each point runs for
a fixed time after a warm-up run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

# (K, N) of a BERT-base layer's weight GEMMs: Q, K, V and the attention output, then the feed-forward pair.
LAYER_GEMMS = ((768, 768),) * 4 + ((768, 3072), (3072, 768))
LAYER_MACS_PER_TOKEN = sum(k * n for k, n in LAYER_GEMMS)
PRECISIONS = ("int8", "fp32")
THREADS = (1, 2)
TOKENS = (50, 256, 512, 2048)
CEILING_THREADS, CEILING_TOKENS = 2, 2048


def layer_graph(precision: str):
    """One layer's weight GEMMs over a ``tokens × K`` input per K (dynamic M), random weights of the right type."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    int8 = precision == "int8"
    rng = np.random.default_rng(0)
    nodes, weights, inputs, outputs = [], [], {}, []

    def constant(name, value):
        weights.append(numpy_helper.from_array(value, name))
        return name

    for i, (k, n) in enumerate(LAYER_GEMMS):
        x = f"x{k}"
        if x not in inputs:
            inputs[x] = helper.make_tensor_value_info(x, TensorProto.UINT8 if int8 else TensorProto.FLOAT,
                                                      ["tokens", k])
            if int8:
                nodes.append(helper.make_node("DequantizeLinear", [x, constant(f"{x}_scale", np.float32(0.02)),
                                              constant(f"{x}_zero", np.uint8(128))], [f"{x}_dq"]))
        if int8:
            w = constant(f"w{i}", rng.integers(-127, 128, (k, n), dtype=np.int8))
            nodes.append(helper.make_node("DequantizeLinear", [w, constant(f"w{i}_scale", np.full(n, 1e-3, np.float32)),
                                          constant(f"w{i}_zero", np.zeros(n, np.int8))], [f"w{i}_dq"], axis=1))
            nodes.append(helper.make_node("MatMul", [f"{x}_dq", f"w{i}_dq"], [f"y{i}_fp32"]))
            # The export's static INT8 quantizes a MatMul's output too, which makes ONNX Runtime run it as
            # QLinearMatMul (uint8 out) rather than MatMulIntegerToFloat.
            nodes.append(helper.make_node("QuantizeLinear", [f"y{i}_fp32", constant(f"y{i}_scale", np.float32(0.5)),
                                          constant(f"y{i}_zero", np.uint8(128))], [f"y{i}"]))
        else:
            nodes.append(helper.make_node("MatMul", [x, constant(f"w{i}", rng.standard_normal((k, n), np.float32))],
                                          [f"y{i}"]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.UINT8 if int8 else TensorProto.FLOAT,
                                                     ["tokens", n]))
    graph = helper.make_graph(nodes, f"bert_base_layer_gemms_{precision}", list(inputs.values()), outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _session(model_bytes: bytes, threads: int, optimized_path: Path | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # the note that a saved optimised graph may hold CPU-specific operators
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def optimized_ops(model_bytes: bytes) -> dict[str, int]:
    """Operator counts of the graph ONNX Runtime runs after its optimisations (ORT_ENABLE_ALL, CPU)."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "optimized.onnx"
        _session(model_bytes, 1, path)
        graph = onnx.load(str(path)).graph
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _feeds(precision: str, tokens: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {f"x{k}": (rng.integers(0, 256, (tokens, k), dtype=np.uint8) if precision == "int8"
                      else rng.standard_normal((tokens, k), dtype=np.float32))
            for k in sorted({k for k, _ in LAYER_GEMMS})}


def macs_per_second(session, precision: str, tokens: int, seconds: float) -> float:
    feeds = _feeds(precision, tokens)
    session.run(None, feeds)  # the first run plans its memory
    runs, started = 0, time.perf_counter()
    while True:
        session.run(None, feeds)
        runs += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return runs * tokens * LAYER_MACS_PER_TOKEN / elapsed


def measure(tokens=TOKENS, threads=THREADS, seconds: float = 0.5, log=print) -> dict:
    """Multiply-adds per second of every (precision, threads, M) point; TOPS counts a multiply-add as 2 operations."""
    if CEILING_TOKENS not in tokens or CEILING_THREADS not in threads:
        raise ValueError(f"the ceiling needs M={CEILING_TOKENS} at {CEILING_THREADS} threads")
    points, ran_as = [], {}
    for precision in PRECISIONS:
        model = layer_graph(precision).SerializeToString()
        ran_as[precision] = optimized_ops(model)
        for n_threads in threads:
            session = _session(model, n_threads)
            for m in tokens:
                rate = macs_per_second(session, precision, m, seconds)
                points.append({"precision": precision, "threads": n_threads, "tokens": m, "macs_per_s": round(rate),
                               "tops": round(2 * rate / 1e12, 4)})
                log(f"  {precision} {n_threads} thread(s) M={m}: {rate / 1e9:.1f} G multiply-adds/s")
            del session
    return {"layer_gemms": [list(shape) for shape in LAYER_GEMMS], "layer_macs_per_token": LAYER_MACS_PER_TOKEN,
            "seconds_per_point": seconds, "ceiling": {"tokens": CEILING_TOKENS, "threads": CEILING_THREADS},
            "ran_as": ran_as, "points": points}


def rate(gemm: dict, precision: str, threads: int = CEILING_THREADS, tokens: int = CEILING_TOKENS) -> int:
    return next(p["macs_per_s"] for p in gemm["points"]
                if (p["precision"], p["threads"], p["tokens"]) == (precision, threads, tokens))


def model_macs_per_token(fp32_onnx: Path, int8_onnx: Path) -> dict:
    """Weight multiply-adds per token of a model's FP32 build, and of its INT8 build those run in INT8 and in FP32
    (a label head, a recurrent layer), from ``export.run_cost``'s graph walk. It prices each weight GEMM's and
    recurrent layer's multiply-adds at INT8_MACS_PER_MS or FP32_MACS_PER_MS by the weight's type: the FP32 build's
    price gives them all, the INT8 build's price then how many of the same run in INT8."""
    from export import run_cost

    fp32_ms, int8_ms = 1 / run_cost.FP32_MACS_PER_MS, 1 / run_cost.INT8_MACS_PER_MS
    total = run_cost.graph_run_cost(fp32_onnx).per_token / fp32_ms
    in_int8 = (total * fp32_ms - run_cost.graph_run_cost(int8_onnx).per_token) / (fp32_ms - int8_ms)
    return {"fp32": round(total), "int8": {"int8": round(in_int8), "fp32": round(total - in_int8)}}


def tokens_per_text(tokenizer_json: Path, texts: list[str]) -> list[int]:
    """Encoder tokens of each text, [CLS] and [SEP] of every window included, no padding."""
    from .baselines import rows_per_text

    return [sum(int(mask.sum()) for _, mask in rows) for rows in rows_per_text(tokenizer_json, texts)]


def ceiling(gemm: dict, macs: dict, text_tokens: list[int], served_per_s: dict[str, float]) -> dict:
    """Tokens and texts per second the weight GEMMs alone would allow each build, at the measured ceiling rates
    (INT8 build: its INT8 multiply-adds at the INT8 rate, the rest at FP32's), and the served throughput's share."""
    int8_rate, fp32_rate = rate(gemm, "int8"), rate(gemm, "fp32")
    seconds_per_token = {"int8": macs["int8"]["int8"] / int8_rate + macs["int8"]["fp32"] / fp32_rate,
                         "fp32": macs["fp32"] / fp32_rate}
    mean_tokens = sum(text_tokens) / len(text_tokens)
    texts_per_s = {p: 1 / s / mean_tokens for p, s in seconds_per_token.items()}
    return {"macs_per_token": macs, "texts": len(text_tokens), "mean_tokens_per_text": mean_tokens,
            "tokens_per_s": {p: round(1 / s, 1) for p, s in seconds_per_token.items()},
            "texts_per_s": {p: round(v, 2) for p, v in texts_per_s.items()},
            "served_best_per_s": served_per_s,
            "share": {p: float(f"{served_per_s[p] / texts_per_s[p]:.4g}") for p in texts_per_s}}
