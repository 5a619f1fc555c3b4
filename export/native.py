"""What Triton 24.10's native ONNX Runtime backend (ONNX Runtime 1.19, the official container) can load, and the
bound on one call it needs.

That backend is not on the machines the tests run on, so it is checked statically: every export with
``--encoder-backend onnxruntime`` refuses an encoder graph that ONNX Runtime 1.19 could not load (an opset or IR
version past it, an operator outside ``OPERATORS``), and sizes the requests so that no call exceeds
``max_tokens_per_run`` tokens.
"""

from __future__ import annotations

from pathlib import Path

# ONNX Runtime 1.19 implements ONNX 1.16: opsets up to 21 of the default domain, IR versions up to 10.
MAX_OPSET = 21
MAX_IR_VERSION = 10
# Operators of the default domain (ai.onnx) that ONNX Runtime 1.19's CPU provider runs at every version up to opset
# 21: those torch's exporter writes for the supported layouts (BERT-family encoders, the default model's BiGRU and
# self-attention) and those INT8 quantization writes (dynamic: DynamicQuantizeLinear + MatMulInteger; static QDQ:
# QuantizeLinear + DequantizeLinear). No other domain: contrib operators (com.microsoft) change between releases, and
# the fused graphs of export/optimize.py are written by a later ONNX Runtime's optimizer, so an export for this backend
# keeps the unfused graph.
OPERATORS = frozenset("""
    Abs Add And ArgMax Cast Ceil Clip Concat Constant ConstantOfShape CumSum DequantizeLinear Div
    DynamicQuantizeLinear Einsum Equal Erf Exp Expand Flatten Floor GRU Gather GatherElements GatherND Gemm Greater
    GreaterOrEqual Identity LSTM LayerNormalization Less LessOrEqual Log MatMul MatMulInteger Max Min Mod Mul Neg Not
    Or Pow QuantizeLinear Range Reciprocal ReduceMax ReduceMean ReduceSum Relu Reshape ScatterND Shape Sigmoid Size
    Slice Softmax Split Sqrt Squeeze Sub Tanh Tile Transpose Trilu Unsqueeze Where
""".split())
DEFAULT_DOMAINS = ("", "ai.onnx")


def unloadable(onnx_path: Path) -> list[str]:
    """Why ONNX Runtime 1.19 could not load this graph; empty when it can."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    problems = []
    if model.ir_version > MAX_IR_VERSION:
        problems.append(f"IR version {model.ir_version} (at most {MAX_IR_VERSION})")
    for opset in model.opset_import:
        if opset.domain not in DEFAULT_DOMAINS:
            problems.append(f"operator domain {opset.domain!r}")
        elif opset.version > MAX_OPSET:
            problems.append(f"opset {opset.version} (at most {MAX_OPSET})")
    graphs, others = [model.graph], set()
    while graphs:  # subgraphs too (If, Loop, Scan bodies)
        graph = graphs.pop()
        for node in graph.node:
            if node.domain not in DEFAULT_DOMAINS:
                others.add(f"{node.domain}.{node.op_type}")
            elif node.op_type not in OPERATORS:
                others.add(node.op_type)
            for attribute in node.attribute:
                graphs.extend([attribute.g] if attribute.HasField("g") else [])
                graphs.extend(attribute.graphs)
    if others:
        problems.append("operators " + ", ".join(sorted(others)))
    return problems


def request_limits(max_texts: int, max_rows: int, max_tokens_per_run: int, longest_row: int) -> tuple[int, int]:
    """(texts, rows) one request may carry on the native backend.

    It runs a call's rows as one tensor with no per-call token budget, and its dynamic batcher forms calls of up to
    the encoder's max_batch_size rows, each as long as the longest length bucket at most. So max_batch_size =
    max_tokens_per_run // longest_row keeps every call within max_tokens_per_run tokens (with the defaults, 2048 //
    512 = 4 rows), and the tokenizer refuses a request needing more rows, naming max_rows_per_request, before
    the encoder sees it; each text takes at least one row, so the ensemble takes no more texts than that."""
    rows = min(max_rows, max_tokens_per_run // longest_row)
    if rows < 1:
        raise ValueError(f"max_tokens_per_run={max_tokens_per_run} cannot hold one row of {longest_row} tokens")
    return min(max_texts, rows), rows
