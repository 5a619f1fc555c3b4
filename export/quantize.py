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
MAX_HEAD_COLUMNS = 64  # a MatMul with at most this many output columns is a label head


@dataclass(frozen=True)
class QuantizationConfig:
    mode: str = "static"
    per_channel: bool = True
    # Set on CPUs without VNNI, whose 8-bit multiply-add can saturate on full-range weights.
    reduce_range: bool = False

    def __post_init__(self) -> None:
        if self.mode not in QUANTIZATION_MODES:
            raise ValueError(f"quantization must be one of {QUANTIZATION_MODES}, not {self.mode!r}")


class _WithoutPreprocessingAdvice(logging.Filter):
    """ONNX Runtime advises, on the root logger, shape inference and graph optimisation before quantizing. The export
    quantizes the encoder as it is, and measures the result instead: INT8's label agreement with FP32 is reported
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
    try:
        if cfg.mode == "dynamic":
            quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8,
                             per_channel=cfg.per_channel, reduce_range=cfg.reduce_range)
            return int8_path
        if calibration is None:
            raise ValueError("static quantization needs calibration inputs")
        rows = iter(calibration)

        class Reader(CalibrationDataReader):
            def get_next(self):
                return next(rows, None)

        # The weight MatMuls and the embedding Gathers, as dynamic quantization does; activation ranges by min/max
        # over the calibration rows (a percentile or entropy calibration needs every row padded to one width, and
        # measured no better here: docs/benchmarks.md).
        quantize_static(str(fp32_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul", "Gather"], per_channel=cfg.per_channel,
                        reduce_range=cfg.reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=_kept_fp32(fp32_path))
    finally:
        logging.getLogger().removeFilter(advice)
    return int8_path


def _kept_fp32(onnx_path: Path) -> list[str]:
    """MatMul nodes left in FP32: the products of two activations (attention's scores and context), and the label
    head (its few columns cost nothing, and its rounding would land on the logits directly)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul"
            and (node.input[1] not in weights or weights[node.input[1]].dims[-1] <= MAX_HEAD_COLUMNS)]


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
