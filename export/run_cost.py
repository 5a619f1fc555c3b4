"""The encoder's run cost (:class:`ner_pipeline.runs.RunCost`) derived from its ONNX graph, at export.

A call costs what its weights take to stream from memory (once per call, whatever its rows), what its multiply-adds
take per padded token, and, in a recurrent encoder, a sequential step per position and direction whatever its rows.
The graph gives the three quantities; the rates below turn them into milliseconds. They were measured once, on one
core of the reference machine (docs/benchmarks.md): BERT-base INT8 costs 4.6 ms per call for its ~85 MB of weights
and 0.28 ms per padded token for its ~85 M multiply-adds. Only the ratios between the three parts steer the plan, so
the same numbers serve other CPUs; and the plan, derived from the file alone, is the same on every start.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ner_pipeline.runs import RunCost

WEIGHT_BYTES_PER_MS = 85e6 / 4.6
INT8_MACS_PER_MS = 85e6 / 0.28
FP32_MACS_PER_MS = INT8_MACS_PER_MS / 4  # FP32 GEMMs run about a quarter of INT8's speed with VNNI
RECURRENT_STEP_MS = 0.0013  # one direction of one GRU/LSTM layer, one position: a small GEMV and its gates
_INT8 = {2, 3}  # onnx.TensorProto UINT8, INT8
# Weight GEMMs, by the input that holds the weight: plain, quantized, and fused by ONNX Runtime's transformer optimizer
# or its session (FusedMatMul; Attention and its dynamic INT8 form QAttention hold Q, K and V as one [hidden, 3 x
# hidden] weight). MultiHeadAttention has no weights: its Q, K, V projections are MatMuls of their own.
_GEMMS = {"MatMul": 1, "MatMulInteger": 1, "Gemm": 1, "FusedMatMul": 1, "Attention": 1, "QAttention": 1,
          "QLinearMatMul": 3}
_RECURRENT = {"GRU", "LSTM", "RNN"}


def graph_run_cost(onnx_path: Path) -> RunCost:
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}

    def constant(name: str):
        """The initializer behind a weight input, looking through a DequantizeLinear (static INT8)."""
        node = producers.get(name)
        if node is not None and node.op_type == "DequantizeLinear":
            name = node.input[0]
        return initializers.get(name)

    weight_bytes = step_ms = token_ms = 0.0
    for node in graph.node:
        if node.op_type in _GEMMS:
            weight = constant(node.input[_GEMMS[node.op_type]])
            if weight is None or len(weight.dims) != 2:  # activation × activation (attention's products)
                continue
            int8 = weight.data_type in _INT8
            macs = float(np.prod(weight.dims))
            weight_bytes += macs * (1 if int8 else 4)
            token_ms += macs / (INT8_MACS_PER_MS if int8 else FP32_MACS_PER_MS)
        elif node.op_type in _RECURRENT:
            macs = sum(float(np.prod(constant(name).dims)) for name in node.input[1:3])  # W and R
            directions = constant(node.input[1]).dims[0]
            weight_bytes += 4 * macs
            token_ms += macs / FP32_MACS_PER_MS
            step_ms += directions * RECURRENT_STEP_MS
    return RunCost(per_run=weight_bytes / WEIGHT_BYTES_PER_MS, per_position=step_ms, per_token=token_ms)
