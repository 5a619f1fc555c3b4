"""How the encoder groups rows of different lengths into runs (one ONNX Runtime call each).

On a CPU every padded position costs as much as a real one, so rows are sorted by real length and cut into runs whose
padding stays small. The served encoder (`model_repository/encoder/1/model.py`) and the benchmark's batched baseline
(`perf/baselines.py`) both call this.
"""

from __future__ import annotations


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
