"""How the encoder groups rows of different lengths into runs (one ONNX Runtime call each).

On a CPU every padded position costs as much as a real one, but so does every call: a BERT-base INT8 call streams its
~85 MB of weights from memory whatever the rows, about 4.6 ms on one core here, as much as 17 tokens of work. So rows
are sorted by real length and cut where the cost model says a cut pays (:func:`plan_runs_by_cost`, what the served
encoder does; the export derives the model from the encoder's graph, ``export.run_cost``, so the plan never depends
on timings taken at load), or where a run's padding would pass a fixed share of its real tokens (:func:`plan_runs`). The served encoder
(`model_repository/encoder/1/model.py`) and the benchmark's batched baseline (`perf/baselines.py`) both call these;
the encoder hands the rows of all its queued requests to :func:`run_rows`, which pads each planned run, calls the
session and gives every request its own logits back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# How the encoder cuts runs: by the cost model (plan_runs_by_cost) or by a padding share (plan_runs).
RUN_PLANNINGS = ("cost", "ratio")


def plan_runs(lengths, max_tokens: int, max_padding_ratio: float, max_rows: int | None = None) -> list[list[int]]:
    """Rows (indices into ``lengths``) grouped into runs: sorted by length, a run is closed when adding the next
    (longer) row would pad it beyond ``max_padding_ratio`` of its real tokens, exceed ``max_tokens`` padded tokens or
    hold more than ``max_rows`` rows."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    runs, current, real = [], [], 0
    for i in order:
        n = max(1, int(lengths[i]))
        padded = (len(current) + 1) * n  # sorted ascending: the new row is the run's longest
        if current and (padded > max_tokens or padded - (real + n) > max_padding_ratio * (real + n)
                        or (max_rows is not None and len(current) + 1 > max_rows)):
            runs.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        runs.append(current)
    return runs


@dataclass(frozen=True)
class RunCost:
    """Milliseconds of one encoder call on ``rows`` rows padded to ``width`` positions: a fixed part per call (on a
    CPU mostly the weights streamed from memory once per call), a part per position whatever the rows (a recurrent
    layer's sequential steps) and a part per padded token."""

    per_run: float
    per_position: float
    per_token: float

    def of(self, rows: int, width: int) -> float:
        return self.per_run + self.per_position * width + self.per_token * rows * width

    @classmethod
    def parse(cls, text: str) -> "RunCost":
        """``"per_run,per_position,per_token"`` in milliseconds, each ≥ 0 and not all 0."""
        values = [float(v) for v in text.split(",")]
        if len(values) != 3 or min(values) < 0 or max(values) <= 0:
            raise ValueError(f"a run cost is three non-negative milliseconds, not all 0: {text!r}")
        return cls(*values)

    def __str__(self) -> str:
        return f"{self.per_run:.4g},{self.per_position:.4g},{self.per_token:.4g}"


def plan_runs_by_cost(lengths, cost: RunCost, max_tokens: int, max_rows: int | None = None) -> list[list[int]]:
    """Rows (indices into ``lengths``) grouped into the runs of least total estimated cost: rows sorted by length,
    each run a contiguous slice padded to its longest row, at most ``max_tokens`` padded tokens (a single row is
    always allowed) and ``max_rows`` rows. Exact, by dynamic programming over the sorted rows."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    widths = [max(1, int(lengths[i])) for i in order]
    n = len(order)
    best = [0.0] + [np.inf] * n  # best[j]: cheapest plan of the j shortest rows
    start = [0] * (n + 1)  # where the last run of that plan starts
    for j in range(1, n + 1):
        width = widths[j - 1]  # the longest row of any run ending at j
        for i in range(j - 1, -1, -1):
            rows = j - i
            if rows > 1 and (rows * width > max_tokens or (max_rows is not None and rows > max_rows)):
                break
            total = best[i] + cost.of(rows, width)
            if total < best[j]:
                best[j], start[j] = total, i
    runs, j = [], n
    while j > 0:
        runs.append(order[start[j]:j])
        j = start[j]
    return runs[::-1]


def real_length(mask_row: np.ndarray) -> int:
    """One past the row's last attended position; 1 for a row that attends nowhere (it still takes a position)."""
    attended = np.flatnonzero(mask_row)
    return int(attended[-1]) + 1 if attended.size else 1


def spread_runs(runs: list[list[int]], lanes: int) -> list[list[int]]:
    """``runs`` with the largest ones halved (rows stay sorted by length) until there are at least ``lanes`` runs or
    none has two rows left: runs that execute side by side finish sooner than one run on all the lanes' threads."""
    runs = [list(members) for members in runs]
    while len(runs) < lanes:
        largest = max(range(len(runs)), key=lambda k: len(runs[k]), default=None)
        if largest is None or len(runs[largest]) < 2:
            break
        members = runs.pop(largest)
        half = len(members) // 2
        runs[largest:largest] = [members[:half], members[half:]]
    return runs


def run_rows(
    requests: Sequence[tuple[np.ndarray, np.ndarray]],
    plan: Callable[[list[int]], list[list[int]]],
    run: Callable[[np.ndarray, np.ndarray], np.ndarray],
    num_labels: int,
    map_runs: Callable = map,
) -> tuple[list[np.ndarray], int]:
    """Logits [rows, width, num_labels] for each request's (input_ids, attention_mask) [rows, width], and the padded
    tokens of the largest run.

    The rows of all requests are pooled with their real lengths (:func:`real_length`); ``plan(lengths)`` cuts them
    into runs (lists of indices into the pool, every row once); each run is padded to its longest row and scored by
    ``run(input_ids, attention_mask)`` -> [rows, width, labels]. A row's logits go back to its request and row; the
    positions past its real length stay 0, so a request's answer does not depend on which rows it shared runs with.
    ``map_runs(function, runs)`` calls ``run`` on every run, in order (``map``) or side by side (an executor's
    ``map``)."""
    rows = [(k, r) for k, (ids, _) in enumerate(requests) for r in range(ids.shape[0])]
    lengths = [real_length(requests[k][1][r]) for k, r in rows]
    outputs = [np.zeros(ids.shape + (num_labels,), dtype=np.float32) for ids, _ in requests]
    runs, inputs = plan(lengths), []
    for members in runs:
        width = max(lengths[i] for i in members)
        ids = np.zeros((len(members), width), dtype=np.int64)
        mask = np.zeros((len(members), width), dtype=np.int64)
        for j, i in enumerate(members):
            source_ids, source_mask = requests[rows[i][0]]
            n = min(width, source_ids.shape[1])
            ids[j, :n] = source_ids[rows[i][1], :n]
            mask[j, :n] = source_mask[rows[i][1], :n]
        inputs.append((ids, mask))
    for members, logits in zip(runs, map_runs(lambda pair: run(*pair), inputs)):
        for j, i in enumerate(members):
            k, r = rows[i]
            outputs[k][r, : lengths[i]] = logits[j, : lengths[i]]
    return outputs, max((ids.size for ids, _ in inputs), default=0)
