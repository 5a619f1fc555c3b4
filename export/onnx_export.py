"""PyTorch encoder → one self-contained ONNX FP32 file, and its parity with PyTorch."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAME = "logits"


# Warnings the TorchScript exporter gives on every export of the project's own encoders (ner_model.architecture) and
# of Hugging Face BERT, each about something that is the same for every input the encoder gets: (category name,
# message start, module the warning names). Each says the trace might not generalise to other inputs; the export's
# parity check runs other batch sizes, lengths and padding than the traced example, so a trace that did not would
# fail there. Other warnings stay visible.
KNOWN_TRACE_WARNINGS = (
    # q, k, v unpacked from a dimension of fixed size 3
    ("TracerWarning", "Iterating over a tensor", r"ner_model\.architecture"),
    # the scale 1/sqrt(head width), a constant of the model
    ("TracerWarning", "Converting a tensor to a Python float", r"ner_model\.architecture"),
    # the GRU's initial state is zeros of the batch's size, not an input
    ("UserWarning", "Exporting a model to ONNX with a batch_size other than 1, with a variable length with GRU",
     r"torch\.onnx\."),
    # the attention mask's length against the key length: equal for every input
    ("TracerWarning", "Converting a tensor to a Python boolean", r"transformers\.masking_utils"),
    # the constant 0.0 of the attention mask
    ("TracerWarning", "torch.tensor results are registered as constants", r"transformers\.masking_utils"),
    # the attention mask's gather, whose indices are positions (never negative)
    ("UserWarning", "Exporting aten::index operator of advanced indexing", r"torch\.onnx\."),
)


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
    categories = {"TracerWarning": torch.jit.TracerWarning, "UserWarning": UserWarning}
    with torch.no_grad(), warnings.catch_warnings():
        for category, message, module in KNOWN_TRACE_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(message), category=categories[category], module=module)
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
