"""Triton's own statistics show dynamic batching at the encoder and response-cache hits at the ensemble."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from serving.processes import stubs_of
from triton_calls import client, infer

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


@contextmanager
def stopped(pids: list[int]):
    """The processes held with SIGSTOP until the block ends: what Triton hands them waits, and so does its queue."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_requests_queued_behind_a_busy_encoder_are_batched(served):
    """Every INT8 encoder instance is kept busy (its process stopped) on one request while more arrive, so that they
    must queue; once the instances run again, Triton's dynamic batcher hands the queued requests over together."""
    instances = [s.pid for s in stubs_of(served.server.process.pid) if s.name.startswith("encoder_int8_")]
    assert instances
    # Distinct texts of one length bucket, so the cache cannot answer and the batcher may group them.
    texts = [f"张三在北京{uuid.uuid4().hex[:12]}的清华大学读书" for _ in range(16)]
    before = model_stats(served, "encoder_int8")
    tokenized = lambda: model_stats(served, "tokenizer").inference_count  # noqa: E731
    with ThreadPoolExecutor(len(texts)) as pool:
        with stopped(instances):
            futures = []
            for text in texts[: len(instances)]:  # one each: the batcher hands it to a free instance at once
                done = tokenized()
                futures.append(pool.submit(infer, served, "grpc", [text]))
                wait_for(lambda: tokenized() > done and pending_requests(served, "encoder_int8") == 0,
                         "a stopped instance to take a request")
            queued = texts[len(instances):]
            futures += [pool.submit(infer, served, "grpc", [text]) for text in queued]
            wait_for(lambda: pending_requests(served, "encoder_int8") == len(queued), "the rest to queue")
        results = [future.result(timeout=120) for future in futures]
    assert all(len(r) == 1 for r in results)
    after = model_stats(served, "encoder_int8")
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    grouped = _grouped_executions(after) - _grouped_executions(before)
    assert inferences == len(texts)
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
