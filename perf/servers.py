"""A real tritonserver per model repository, on free loopback ports, and Triton's per-model statistics."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from serving.server import REPO_ROOT, ServerConfig, TritonServer, free_port

from .triton_calls import client

__all__ = ["REPO_ROOT", "model_statistics", "statistics_delta", "triton"]


@contextmanager
def triton(repository: Path, log_dir: Path, timeout: float = 300.0):
    """Starts tritonserver on ``repository`` and yields it (``.http_url``, ``.grpc_url``, ``.process.pid``)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    server = TritonServer(ServerConfig(model_repository=repository, http_port=free_port(), grpc_port=free_port(),
                                       metrics_port=free_port(), log_file=log_dir / f"tritonserver-{repository.name}.log"))
    started = time.perf_counter()
    server.start(timeout=timeout)
    server.ready_seconds = round(time.perf_counter() - started, 2)
    try:
        yield server
    finally:
        server.stop()


def model_statistics(url: str, protocol: str = "grpc") -> dict:
    """Cumulative statistics of every model: counts and total nanoseconds per stage."""
    connection = client(protocol, url)
    stats = connection.get_inference_statistics(as_json=True) if protocol == "grpc" else \
        connection.get_inference_statistics()
    out = {}
    for model in stats.get("model_stats", []):
        inference = model.get("inference_stats", {})
        out[model["name"]] = {
            "inference_count": int(model.get("inference_count", 0)),
            "execution_count": int(model.get("execution_count", 0)),
            **{f"{stage}_ns": int(inference.get(stage, {}).get("ns", 0))
               for stage in ("success", "queue", "compute_input", "compute_infer", "compute_output")},
            "success_count": int(inference.get("success", {}).get("count", 0)),
            "cache_hit_count": int(inference.get("cache_hit", {}).get("count", 0)),
        }
    return out


def encoder_model(models, precision: str) -> str:
    """Of the models named in ``models``, the one that runs an ensemble's encoder: ``text_encoder_<precision>`` where
    the ensembles run the fused form (only then does a repository hold it), else ``encoder_<precision>``."""
    fused = f"text_encoder_{precision}"
    return fused if fused in models else f"encoder_{precision}"


def encoder_stats(stats: dict, precision: str) -> dict:
    """Of :func:`statistics_delta`'s models, the one that ran an ensemble's encoder; empty when it served nothing."""
    return stats.get(encoder_model(stats, precision), {})


def statistics_delta(before: dict, after: dict) -> dict:
    """Per model, over the requests between two snapshots: mean milliseconds per request in each stage, and the mean
    number of requests per execution (what the dynamic batcher achieved)."""
    out = {}
    for name, end in after.items():
        start = before.get(name, {})
        d = {k: end[k] - start.get(k, 0) for k in end}
        n = d["success_count"]
        if n <= 0:
            continue
        out[name] = {
            "requests": n,
            "executions": d["execution_count"],
            "inferences": d["inference_count"],
            "requests_per_execution": round(n / max(d["execution_count"], 1), 2),
            **{f"{stage}_ms": round(d[f"{stage}_ns"] / n / 1e6, 3)
               for stage in ("success", "queue", "compute_input", "compute_infer", "compute_output")},
        }
    return out
