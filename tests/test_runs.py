"""The encoder's rule for grouping rows of different lengths into runs (ner_pipeline.runs.plan_runs)."""

from __future__ import annotations

import random

from ner_pipeline.runs import plan_runs


def padded_and_real(lengths, run):
    width = max(lengths[i] for i in run)
    return width * len(run), sum(lengths[i] for i in run)


def test_every_row_once_and_each_run_within_its_bounds():
    rng = random.Random(7)
    for _ in range(200):
        lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 60))]
        ratio, max_tokens, max_rows = rng.choice([0.0, 0.25, 1.0]), rng.choice([512, 2048]), rng.choice([None, 4])
        runs = plan_runs(lengths, max_tokens, ratio, max_rows)
        assert sorted(i for run in runs for i in run) == list(range(len(lengths)))
        for run in runs:
            padded, real = padded_and_real(lengths, run)
            if len(run) > 1:  # a single row is always allowed, whatever its length
                assert padded <= max_tokens
                assert padded - real <= ratio * real + 1e-9
                assert max_rows is None or len(run) <= max_rows


def test_equal_lengths_share_a_run_and_distant_ones_do_not():
    assert plan_runs([10, 10, 10, 10], 2048, 0.0) == [[0, 1, 2, 3]]
    assert plan_runs([10, 100, 10], 2048, 0.25) == [[0, 2], [1]]
    assert plan_runs([10] * 5, 2048, 0.0, max_rows=2) == [[0, 1], [2, 3], [4]]
    assert plan_runs([10] * 5, 30, 0.0) == [[0, 1, 2], [3, 4]]
