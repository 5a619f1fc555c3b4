"""How the encoder groups rows of different lengths into runs and gives each request its logits back
(ner_pipeline.runs)."""

from __future__ import annotations

import itertools
import random
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ner_pipeline.runs import RunCost, plan_runs, plan_runs_by_cost, real_length, run_rows, spread_runs

pytestmark = pytest.mark.unit


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


# The cost-model planner (the served default): ner_pipeline.runs.plan_runs_by_cost.

def brute_force_cost(lengths, cost, max_tokens, max_rows=None):
    """Cheapest total over every way of cutting the sorted rows into contiguous runs (2^(n-1) plans)."""
    widths = sorted(max(1, n) for n in lengths)
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(widths) - 1):
        total, first, ok = 0.0, 0, True
        for end in [i + 1 for i, cut in enumerate(cuts) if cut] + [len(widths)]:
            rows, width = end - first, widths[end - 1]
            if rows > 1 and (rows * width > max_tokens or (max_rows is not None and rows > max_rows)):
                ok = False
                break
            total += cost.of(rows, width)
            first = end
        if ok:
            best = min(best, total)
    return best


def plan_total(lengths, runs, cost):
    return sum(cost.of(len(run), max(max(1, lengths[i]) for i in run)) for run in runs)


def test_cost_plan_covers_every_row_once_within_bounds_and_is_cheapest():
    rng = random.Random(11)
    for _ in range(150):
        lengths = [rng.randint(1, 200) for _ in range(rng.randint(1, 9))]
        cost = RunCost(rng.choice([0.0, 0.5, 4.6]), rng.choice([0.0, 0.01]), rng.choice([0.0075, 0.28]))
        max_tokens, max_rows = rng.choice([256, 2048]), rng.choice([None, 3])
        runs = plan_runs_by_cost(lengths, cost, max_tokens, max_rows)
        assert sorted(i for run in runs for i in run) == list(range(len(lengths)))
        for run in runs:
            padded, _ = padded_and_real(lengths, run)
            if len(run) > 1:
                assert padded <= max_tokens
                assert max_rows is None or len(run) <= max_rows
        assert plan_total(lengths, runs, cost) == pytest.approx(brute_force_cost(lengths, cost, max_tokens, max_rows))


def test_cost_plan_merges_when_a_call_costs_more_than_the_padding():
    weights_bound = RunCost(per_run=4.6, per_position=0.0, per_token=0.28)  # BERT-base INT8, one core, measured
    # 10 padded tokens (2.8 ms) cost less than a second call (4.6 ms); 40 (11.2 ms) do not.
    assert plan_runs_by_cost([30, 40], weights_bound, 2048) == [[0, 1]]
    assert plan_runs_by_cost([30, 70], weights_bound, 2048) == [[0], [1]]
    # The ratio rule merges the long pair (padding 25 % of 130 real tokens), paying 30 padded tokens.
    assert plan_runs([100, 130], 2048, 0.25) == [[0, 1]]
    assert plan_runs_by_cost([100, 130], weights_bound, 2048) == [[0], [1]]
    steps_bound = RunCost(per_run=0.05, per_position=0.01, per_token=0.0075)  # a recurrent encoder pays per step
    assert plan_runs_by_cost([50, 64], steps_bound, 2048) == [[0, 1]]
    assert plan_runs_by_cost([], weights_bound, 2048) == []


def _onnx_file(tmp_path, name: str, nodes, initializers) -> str:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph), path)
    return path


def test_run_cost_is_derived_from_the_graph_weights(tmp_path):
    """export.run_cost: weights streamed per call, multiply-adds per token (INT8 weights behind a DequantizeLinear at
    INT8's rate), recurrent steps per position; nothing is timed, so one file always gives one cost."""
    from onnx import helper, numpy_helper

    from export.run_cost import FP32_MACS_PER_MS, INT8_MACS_PER_MS, RECURRENT_STEP_MS, WEIGHT_BYTES_PER_MS, graph_run_cost

    w = numpy_helper.from_array(np.ones((64, 32), np.float32), "w")
    fp32 = graph_run_cost(_onnx_file(tmp_path, "fp32", [helper.make_node("MatMul", ["x", "w"], ["y"])], [w]))
    assert fp32 == RunCost(64 * 32 * 4 / WEIGHT_BYTES_PER_MS, 0.0, 64 * 32 / FP32_MACS_PER_MS)

    q = numpy_helper.from_array(np.ones((64, 32), np.int8), "q")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    int8 = graph_run_cost(_onnx_file(tmp_path, "int8", [helper.make_node("DequantizeLinear", ["q", "scale"], ["w"]),
                                                        helper.make_node("MatMul", ["x", "w"], ["y"])], [q, scale]))
    assert int8 == RunCost(64 * 32 / WEIGHT_BYTES_PER_MS, 0.0, 64 * 32 / INT8_MACS_PER_MS)

    hidden = 16
    gru_w = numpy_helper.from_array(np.ones((2, 3 * hidden, 64), np.float32), "W")
    gru_r = numpy_helper.from_array(np.ones((2, 3 * hidden, hidden), np.float32), "R")
    gru = graph_run_cost(_onnx_file(tmp_path, "gru", [helper.make_node("GRU", ["x", "W", "R"], ["y"], hidden_size=hidden,
                                                                     direction="bidirectional")], [gru_w, gru_r]))
    macs = 2 * 3 * hidden * (64 + hidden)
    assert gru == RunCost(4 * macs / WEIGHT_BYTES_PER_MS, 2 * RECURRENT_STEP_MS, macs / FP32_MACS_PER_MS)
    # Attention products (activation × activation) add no weights.
    attention = graph_run_cost(_onnx_file(tmp_path, "attention", [helper.make_node("MatMul", ["x", "x"], ["y"])], []))
    assert attention == RunCost(0.0, 0.0, 0.0)


def test_run_cost_text_form_round_trips_and_rejects_nonsense():
    cost = RunCost.parse("4.6,0,0.28")
    assert RunCost.parse(str(cost)) == cost
    for bad in ("4.6,0.28", "-1,0,0.28", "0,0,0", "a,b,c"):
        with pytest.raises(ValueError):
            RunCost.parse(bad)


# The encoder's scheduling of the rows of all its queued requests: ner_pipeline.runs.run_rows.

LABELS = 3


def fake_session(calls: list):
    """Stands in for the ONNX session: records its inputs and scores each position from its id and mask (never 0),
    so that a position's logits show which input position they came from."""

    def run(ids, mask):
        calls.append((ids.copy(), mask.copy()))
        return (ids[..., None] + 100 * mask[..., None] + 1000 * np.arange(1, LABELS + 1)).astype(np.float32)

    return run


def request(rng, masks: list[list[int]]):
    mask = np.array(masks, dtype=np.int64).reshape(len(masks), -1)
    ids = np.where(mask == 1, rng.integers(1, 100, size=mask.shape), 0).astype(np.int64)
    return ids, mask


def expected_logits(ids, mask, lengths):
    out = np.zeros(ids.shape + (LABELS,), dtype=np.float32)
    for r, n in enumerate(lengths):
        out[r, :n] = ids[r, :n, None] + 100 * mask[r, :n, None] + 1000 * np.arange(1, LABELS + 1)
    return out


def test_rows_of_several_requests_share_runs_and_come_back_to_their_request():
    rng = np.random.default_rng(3)
    a = request(rng, [[1] * 7, [1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0]])  # real lengths 7, 2, 4 (a gap)
    b = request(rng, [[1] * 12, [1] * 3 + [0] * 9])  # 12, 3
    c = request(rng, [[0, 0, 0, 0]])  # attends nowhere: still one position
    d = (np.zeros((0, 5), dtype=np.int64), np.zeros((0, 5), dtype=np.int64))  # a request without rows
    seen, calls = [], []

    def plan(lengths):
        seen.append(list(lengths))
        return [[1, 4, 5, 2], [0], [3]]  # the first run mixes rows of a, b and c

    outputs, largest = run_rows([a, b, c, d], plan, fake_session(calls), LABELS)

    assert seen == [[7, 2, 4, 12, 3, 1]]
    # Each run padded to its own longest row; rows longer than that width (c's, a's second) cut to it.
    assert [ids.shape for ids, _ in calls] == [(4, 4), (1, 7), (1, 12)]
    run_ids, run_mask = calls[0]
    assert run_ids.tolist() == [a[0][1, :4].tolist(), b[0][1, :4].tolist(), c[0][0].tolist(), a[0][2, :4].tolist()]
    assert run_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 0, 1]]
    assert calls[2][0].tolist() == b[0][:1].tolist() and calls[2][1].tolist() == b[1][:1].tolist()
    assert largest == 16
    # Every row back in its request's place, scored at its own positions, 0 past its real length.
    assert [o.shape for o in outputs] == [(3, 7, LABELS), (2, 12, LABELS), (1, 4, LABELS), (0, 5, LABELS)]
    assert all(o.dtype == np.float32 for o in outputs)
    np.testing.assert_array_equal(outputs[0], expected_logits(*a, [7, 2, 4]))
    np.testing.assert_array_equal(outputs[1], expected_logits(*b, [12, 3]))
    np.testing.assert_array_equal(outputs[2], expected_logits(*c, [1]))


def test_a_requests_logits_do_not_depend_on_its_run_mates():
    rng = np.random.default_rng(5)
    cost = RunCost(per_run=4.6, per_position=0.0, per_token=0.28)
    for _ in range(30):
        requests = []
        for _ in range(rng.integers(1, 6)):
            width = int(rng.integers(1, 40))
            lengths = rng.integers(0, width + 1, size=int(rng.integers(0, 5)))
            requests.append(request(rng, [[1] * n + [0] * (width - n) for n in lengths]) if len(lengths)
                            else (np.zeros((0, width), np.int64), np.zeros((0, width), np.int64)))
        grouped, _ = run_rows(requests, lambda n: plan_runs_by_cost(n, cost, 256), fake_session([]), LABELS)
        alone, _ = run_rows(requests, lambda n: [[i] for i in range(len(n))], fake_session([]), LABELS)
        for got, want, (ids, mask) in zip(grouped, alone, requests):
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, expected_logits(ids, mask, [real_length(m) for m in mask]))


def test_spread_runs_halves_the_largest_until_every_lane_has_one():
    assert spread_runs([[0, 1, 2, 3, 4]], 2) == [[0, 1], [2, 3, 4]]
    assert spread_runs([[0], [1, 2, 3, 4]], 2) == [[0], [1, 2, 3, 4]]  # already one run per lane
    assert spread_runs([[0, 1], [2, 3, 4, 5]], 4) == [[0], [1], [2, 3], [4, 5]]
    assert spread_runs([[0]], 2) == [[0]]  # a lone row stays whole
    assert spread_runs([], 2) == []
    assert spread_runs([[0, 1, 2]], 1) == [[0, 1, 2]]


def test_runs_side_by_side_give_every_request_the_same_logits():
    """The encoder's concurrent runs (an executor's map over one session): each run's logits go back to its rows
    whatever order the runs finish in."""
    rng = np.random.default_rng(7)
    cost = RunCost(per_run=4.6, per_position=0.0, per_token=0.28)
    requests = [request(rng, [[1] * n + [0] * (30 - n) for n in rng.integers(1, 31, size=4)]) for _ in range(6)]
    session = fake_session([])

    def slow_first(ids, mask):  # the first runs finish last
        time.sleep(0.002 * (40 - ids.shape[1]) / 40)
        return session(ids, mask)

    def plan(lengths):
        return spread_runs(plan_runs_by_cost(lengths, cost, 64), 4)

    in_order, _ = run_rows(requests, plan, session, LABELS)
    with ThreadPoolExecutor(4) as pool:
        side_by_side, _ = run_rows(requests, plan, slow_first, LABELS, pool.map)
    for got, want, (ids, mask) in zip(side_by_side, in_order, requests):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, expected_logits(ids, mask, [real_length(m) for m in mask]))
