"""The default model's latency target, measured by alternation: the in-process ONNX Runtime session and the Triton
ensemble at concurrency 1 take turns over the same block of texts, several rounds, so that both sides of the gap see
the same state of a shared machine (a virtual machine's speed drifts over minutes; the side-by-side figures are
taken minutes apart).
"""

from __future__ import annotations

import statistics
import time

from . import baselines, load


def interleaved_gap(grpc_url: str, model: str, onnx_path, tokenizer_json, texts: list[str], use_sdk: bool,
                    rounds: int = 5, per_round: int = 80) -> dict:
    """After one untimed pass over all the texts on both sides, per round: p50 of the session over ``per_round``
    texts, then p50 of ``model`` over the same texts (gRPC, one request at a time); the gap is the median over rounds
    of (Triton p50 − session p50)."""
    session = baselines.ort_session(onnx_path)
    run_session = baselines.session_runner(session)
    call = load.make_caller(grpc_url, "grpc", model, use_sdk)
    blocks = [[texts[(r * per_round + i) % len(texts)] for i in range(per_round)] for r in range(rounds)]
    rows_of_block = [baselines.rows_per_text(tokenizer_json, block) for block in blocks]
    # One untimed pass over every text on both sides first: ONNX Runtime plans memory per new input shape, in the
    # served encoder as in process, and a server's p50 is a steady-state figure.
    for block, rows in zip(blocks, rows_of_block):
        for item in rows:
            run_session(item)
        for text in block:
            call(text)
    out = []
    for block, rows in zip(blocks, rows_of_block):
        session_ms, triton_ms = [], []
        for item in rows[:3]:  # warm the caches of this side
            run_session(item)
        for item in rows:
            t0 = time.perf_counter()
            run_session(item)
            session_ms.append((time.perf_counter() - t0) * 1000)
        for text in block[:3]:
            call(text)
        for text in block:
            t0 = time.perf_counter()
            call(text)
            triton_ms.append((time.perf_counter() - t0) * 1000)
        s50, t50 = statistics.median(session_ms), statistics.median(triton_ms)
        out.append({"session_p50_ms": round(s50, 3), "triton_p50_ms": round(t50, 3), "gap_ms": round(t50 - s50, 3)})
    return {"model": model, "rounds": out, "texts_per_round": per_round,
            "median_gap_ms": round(statistics.median(r["gap_ms"] for r in out), 3),
            "session_p50_ms": round(statistics.median(r["session_p50_ms"] for r in out), 3),
            "triton_p50_ms": round(statistics.median(r["triton_p50_ms"] for r in out), 3)}
