"""PyTorch encoder → one self-contained ONNX FP32 file, and its parity with PyTorch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class OnnxExportConfig:
    # The official 24.10 container runs ONNX Runtime 1.19, which reads opsets up to 21.
    opset: int = 17
    parity_tolerance: float = 1e-4


def export_fp32(model: torch.nn.Module, path: Path, cfg: OnnxExportConfig) -> Path:
    """Writes the encoder with dynamic batch and sequence axes, weights inside the file."""
    import torch

    dummy = (torch.full((2, 8), 101, dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        # The TorchScript exporter writes one file with the weights inside; the dynamo exporter may not.
        torch.onnx.export(
            model,
            dummy,
            str(path),
            dynamo=False,
            opset_version=cfg.opset,
            input_names=INPUT_NAMES,
            output_names=[OUTPUT_NAME],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, OUTPUT_NAME: {0: "batch", 1: "sequence"}},
        )
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    return path


def onnx_session(path: Path, threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    return session.run([OUTPUT_NAME], {"input_ids": input_ids, "attention_mask": attention_mask})[0]


def run_torch(model: torch.nn.Module, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).float().numpy()


def max_abs_difference(model: torch.nn.Module, session, rows: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Largest |PyTorch − ONNX| over the real (unpadded) positions of the given rows."""
    worst = 0.0
    for input_ids, attention_mask in rows:
        expected = run_torch(model, input_ids, attention_mask)
        actual = run_onnx(session, input_ids, attention_mask)
        real = attention_mask.astype(bool)
        worst = max(worst, float(np.abs(expected[real] - actual[real]).max()))
    return worst
