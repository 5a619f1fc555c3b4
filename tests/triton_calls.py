"""The raw tritonclient calls of perf/triton_calls.py, addressed to a served test model."""

from __future__ import annotations

from perf.triton_calls import MODULES, client, tensor, text_tensor
from perf.triton_calls import infer as infer_url

__all__ = ["MODULES", "client", "infer", "tensor", "text_tensor"]


def infer(served, protocol: str, texts: list, model: str = "ner") -> list[list[dict]]:
    return infer_url(protocol, served.http_url if protocol == "http" else served.grpc_url, texts, model)
