"""ONNX FP32 → INT8 with ONNX Runtime's quantizer, and how often INT8 picks FP32's label.

``static`` (the default): activation scales calibrated once, at export, on training text (:mod:`export.calibration`)
and stored in the graph (QDQ), so a row's scores do not depend on the rows it shares a call with. ``dynamic``: ONNX
Runtime computes each activation scale per call, over every row of the call, so a text's INT8 scores move slightly
with what Triton batched it with; kept for comparison (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .onnx_export import run_onnx

QUANTIZATION_MODES = ("static", "dynamic")
# What SmoothQuant scales: LayerNorm outputs, as exported or fused with the residual Add before (export/optimize.py)
LAYER_NORMS = ("LayerNormalization", "SkipLayerNormalization")


def _label_count(graph) -> int:
    """The width of the encoder's output: one column per label."""
    return graph.output[0].type.tensor_type.shape.dim[-1].dim_value


def _is_head(weight, labels: int) -> bool:
    """The label head is the weight MatMul with one column per label. (A rule on shapes alone, such as "much narrower
    than its input", also catches BERT's feed-forward output, 3072 → 768.)"""
    return weight.dims[-1] == labels


@dataclass(frozen=True)
class QuantizationConfig:
    mode: str = "static"
    # SmoothQuant's migration strength before static quantization (0: none); chosen on MSRA dev: docs/benchmarks.md.
    smoothing: float = 0.5
    per_channel: bool = True
    # Set on CPUs without VNNI, whose 8-bit multiply-add can saturate on full-range weights.
    reduce_range: bool = False

    def __post_init__(self) -> None:
        if self.mode not in QUANTIZATION_MODES:
            raise ValueError(f"quantization must be one of {QUANTIZATION_MODES}, not {self.mode!r}")


class _WithoutPreprocessingAdvice(logging.Filter):
    """ONNX Runtime advises, on the root logger, shape inference and graph optimisation before quantizing. The export
    does both its own way for a BERT-family encoder (export/optimize.py) and quantizes any other encoder as it is,
    and measures the result: INT8's label agreement with FP32 is reported
    (export_report.json), as are the encoder's speed and accuracy (docs/benchmarks.md)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in str(record.msg)


def quantize_int8(fp32_path: Path, int8_path: Path, cfg: QuantizationConfig,
                  calibration: Iterable[dict[str, np.ndarray]] | None = None) -> Path:
    """Writes ``int8_path``; ``calibration`` (encoder inputs) is required for static quantization."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    advice = _WithoutPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    smoothed = Path(str(int8_path) + ".smoothed-fp32.onnx")
    try:
        if cfg.mode == "dynamic":
            quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8,
                             per_channel=cfg.per_channel, reduce_range=cfg.reduce_range)
            return int8_path
        if calibration is None:
            raise ValueError("static quantization needs calibration inputs")
        calibration = list(calibration)
        source = smooth_activations(fp32_path, smoothed, calibration, cfg.smoothing)
        rows = iter(calibration)

        class Reader(CalibrationDataReader):
            def get_next(self):
                return next(rows, None)

        # The weight MatMuls and the embedding Gathers, as dynamic quantization does; activation ranges by min/max
        # over the calibration rows (a percentile or entropy calibration needs every row padded to one width, and
        # measured no better here: docs/benchmarks.md).
        quantize_static(str(source), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul", "Gather"], per_channel=cfg.per_channel,
                        reduce_range=cfg.reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=_kept_fp32(source))
    finally:
        logging.getLogger().removeFilter(advice)
        smoothed.unlink(missing_ok=True)
    return int8_path


def smooth_activations(fp32_path: Path, output: Path, calibration: list[dict[str, np.ndarray]],
                       alpha: float) -> Path:
    """Moves part of the activations' per-channel range into the weights before static quantization (SmoothQuant):
    for each LayerNorm output (``LAYER_NORMS``) that feeds weight MatMuls, a channel c is divided by s_c = a_c^alpha /
    w_c^(1 - alpha) (a_c: its largest |activation| over the calibration rows; w_c: the largest |weight| of row c over
    those MatMuls) by a Mul inserted before them, and row c of their weights is multiplied by s_c. In FP32 the graph
    computes the same function; per-tensor INT8 scales then fit channels whose ranges differ by orders of magnitude.
    ``alpha`` 0 leaves the graph as it is."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32_path))
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output_name: node for node in graph.node for output_name in node.output}
    labels = _label_count(graph)
    groups: dict[str, list] = {}
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "MatMul" else None
        weight = weights.get(node.input[1]) if source is not None else None
        if (source is not None and source.op_type in LAYER_NORMS and weight is not None
                and len(weight.dims) == 2 and not _is_head(weight, labels)):
            groups.setdefault(node.input[0], []).append(node)
    if alpha <= 0 or not groups:
        return fp32_path

    probe = onnx.load(str(fp32_path))
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in groups)
    import onnxruntime as ort

    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    del probe
    largest = {name: 0.0 for name in groups}
    for inputs in calibration:
        real = inputs["attention_mask"].astype(bool)
        for name, values in zip(groups, session.run(list(groups), inputs)):
            largest[name] = np.maximum(largest[name], np.abs(values[real]).max(axis=0))

    scaling = {}
    for name, nodes in groups.items():
        matrices = [numpy_helper.to_array(weights[node.input[1]]) for node in nodes]
        weight_range = np.max([np.abs(m).max(axis=1) for m in matrices], axis=0)
        scale = np.clip(np.maximum(largest[name], 1e-8) ** alpha / np.maximum(weight_range, 1e-8) ** (1 - alpha),
                        1e-4, 1e4).astype(np.float32)
        inverse = numpy_helper.from_array(1 / scale, f"{name}/smooth_inverse")
        graph.initializer.append(inverse)
        scaling[name] = helper.make_node("Mul", [name, inverse.name], [f"{name}/smoothed"], name=f"{name}/smooth")
        for node, matrix in zip(nodes, matrices):
            node.input[0] = f"{name}/smoothed"
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(matrix * scale[:, None], node.input[1]))
    ordered = []  # each Mul right after the LayerNorm it scales, so the graph stays topologically sorted
    for node in graph.node:
        ordered.append(node)
        ordered.extend(scaling[name] for name in node.output if name in scaling)
    del graph.node[:]
    graph.node.extend(ordered)
    onnx.save(model, str(output))
    return output


def _kept_fp32(onnx_path: Path) -> list[str]:
    """MatMul nodes left in FP32: the products of two activations (attention's scores and context), and the label
    head (its few columns cost little, and its rounding would land on the logits directly)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul"
            and (node.input[1] not in weights or _is_head(weights[node.input[1]], _label_count(graph)))]


def label_agreement(fp32_session, int8_session, rows: list[tuple[np.ndarray, ...]],
                    tag: Callable[[np.ndarray], np.ndarray] = lambda emissions: emissions.argmax(-1)) -> float:
    """Share of compared positions where INT8's label equals FP32's. A row is (input_ids, attention_mask) or
    (input_ids, attention_mask, compared): positions default to the real tokens. ``tag`` turns one row's emissions
    at its compared positions [n, labels] into labels: argmax by default, the decoder's (CRF Viterbi) for the labels
    a user gets."""
    same = total = 0
    for input_ids, attention_mask, *compared in rows:
        real = (compared[0] if compared else attention_mask).astype(bool)
        fp32 = run_onnx(fp32_session, input_ids, attention_mask)
        int8 = run_onnx(int8_session, input_ids, attention_mask)
        for row in range(real.shape[0]):
            same += int((tag(fp32[row][real[row]]) == tag(int8[row][real[row]])).sum())
            total += int(real[row].sum())
    return same / max(total, 1)
