"""Triton's own statistics show dynamic batching at the encoder and response-cache hits at the ensemble."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from triton_calls import client, infer, tensor

pytestmark = pytest.mark.server


def model_stats(served, model: str):
    (stats,) = client("grpc", served.grpc_url).get_inference_statistics(model).model_stats
    return stats


def pending_requests(served, model: str) -> int:
    """Requests waiting in ``model``'s queue now (Triton's gauge nv_inference_pending_request_count)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{served.server.cfg.metrics_port}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("nv_inference_pending_request_count{") and f'model="{model}"' in line:
                return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError(f"Triton reports no pending-request count for {model}")


def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_requests_waiting_for_the_encoder_are_batched(served):
    """Sixteen clients call the INT8 encoder, each sending its next request as soon as it has an answer, until Triton's
    gauge shows requests waiting for it. Waiting requests leave the queue together: the next free instance gets them as
    one batch, which Triton's per-batch-size statistics count."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 8000, size=(1, 512), dtype=np.int64)
    mask = np.ones_like(ids)
    before = model_stats(served, "encoder_int8")
    stop, sent = threading.Event(), [0] * 16

    def calls(k: int) -> None:
        connection = client("grpc", served.grpc_url)
        while not stop.is_set():
            connection.infer("encoder_int8", [tensor("grpc", "input_ids", ids, "INT64"),
                                              tensor("grpc", "attention_mask", mask, "INT64")])
            sent[k] += 1

    with ThreadPoolExecutor(len(sent)) as pool:
        running = [pool.submit(calls, k) for k in range(len(sent))]
        try:
            wait_for(lambda: pending_requests(served, "encoder_int8") >= 2, "two requests waiting for the encoder")
        finally:
            stop.set()
        for future in running:
            future.result()
    wait_for(lambda: model_stats(served, "encoder_int8").inference_count - before.inference_count >= sum(sent),
             "Triton's statistics to count every request")
    after = model_stats(served, "encoder_int8")
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    grouped = _grouped_executions(after) - _grouped_executions(before)
    assert inferences == sum(sent)
    assert executions < inferences and grouped > 0, (executions, inferences, grouped)


def _grouped_executions(stats) -> int:
    """Executions that carried two or more requests, from Triton's per-batch-size statistics."""
    return sum(b.compute_infer.count for b in stats.batch_stats if b.batch_size >= 2)


def test_repeated_text_is_a_cache_hit(served):
    text = f"李四在上海{uuid.uuid4().hex}"
    before = model_stats(served, "ner").inference_stats.cache_hit.count
    first = infer(served, "http", [text])
    second = infer(served, "http", [text])
    assert first == second
    assert model_stats(served, "ner").inference_stats.cache_hit.count == before + 1
