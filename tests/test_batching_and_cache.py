"""Triton's own statistics show dynamic batching at the encoder and response-cache hits at the ensemble."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from triton_calls import client, infer


def model_stats(served, model: str):
    (stats,) = client("grpc", served.grpc_url).get_inference_statistics(model).model_stats
    return stats


def test_concurrent_clients_are_batched_at_the_encoder(served):
    before = model_stats(served, "encoder_int8")
    # Distinct texts of one length bucket, so the cache cannot answer and the batcher may group them.
    texts = [f"张三在北京{uuid.uuid4().hex[:12]}的清华大学读书" for _ in range(16 * 12)]

    def worker(chunk):
        return [infer(served, "grpc", [text])[0] for text in chunk]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(worker, [texts[i::16] for i in range(16)]))
    assert all(len(r) == 12 for r in results)
    after = model_stats(served, "encoder_int8")
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == len(texts)
    # How much the batcher groups depends on timing (how many requests wait while one batch runs); that it groups
    # concurrent requests at all does not. The share of grouped requests is a benchmark figure (perf/), not a test's.
    grouped = _grouped_executions(after) - _grouped_executions(before)
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
