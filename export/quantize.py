"""ONNX FP32 → INT8 by ONNX Runtime's dynamic quantization, and how often INT8 picks FP32's label."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .onnx_export import run_onnx


@dataclass(frozen=True)
class QuantizationConfig:
    per_channel: bool = True
    # Set on CPUs without VNNI, whose 8-bit multiply-add can saturate on full-range weights.
    reduce_range: bool = False


class _WithoutPreprocessingAdvice(logging.Filter):
    """ONNX Runtime advises, on the root logger, shape inference and graph optimisation before quantizing. The export
    quantizes the encoder as it is, and measures the result instead: INT8's label agreement with FP32 is reported
    (export_report.json), as are the encoder's speed and accuracy (docs/benchmarks.md)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing before quantization")


def quantize_int8(fp32_path: Path, int8_path: Path, cfg: QuantizationConfig) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    advice = _WithoutPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            weight_type=QuantType.QInt8,
            per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range,
        )
    finally:
        logging.getLogger().removeFilter(advice)
    return int8_path


def label_agreement(fp32_session, int8_session, rows: list[tuple[np.ndarray, ...]]) -> float:
    """Share of compared positions where INT8's argmax label equals FP32's. A row is (input_ids, attention_mask) or
    (input_ids, attention_mask, compared): positions default to the real tokens."""
    same = total = 0
    for input_ids, attention_mask, *compared in rows:
        real = (compared[0] if compared else attention_mask).astype(bool)
        fp32 = run_onnx(fp32_session, input_ids, attention_mask).argmax(-1)[real]
        int8 = run_onnx(int8_session, input_ids, attention_mask).argmax(-1)[real]
        same += int((fp32 == int8).sum())
        total += int(real.sum())
    return same / max(total, 1)
