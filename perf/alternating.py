"""Targets that compare the in-process ONNX Runtime session with the Triton ensemble, measured by alternation: the two
take turns over the same block of texts, several rounds, so that both sides of a ratio or gap see the same state of
a shared machine. A virtual machine's speed drifts over minutes (the same session gave 63 to 85 BERT-base texts/s in
runs an hour apart), and the side-by-side figures are taken minutes apart.

Before the rounds, one untimed pass over every text on both sides: ONNX Runtime plans memory per new input shape, in
the served encoder as in process, and both targets are about the steady state.
"""

from __future__ import annotations

import statistics
import time

from . import baselines, load


def _prepared(onnx_path, tokenizer_json, call, texts: list[str], rounds: int, per_round: int):
    """The session runner, the rounds' blocks of texts and their encoder rows, after the untimed pass on both sides."""
    run_session = baselines.session_runner(baselines.ort_session(onnx_path))
    blocks = [[texts[(r * per_round + i) % len(texts)] for i in range(per_round)] for r in range(rounds)]
    rows_of_block = [baselines.rows_per_text(tokenizer_json, block) for block in blocks]
    for block, rows in zip(blocks, rows_of_block):
        for item in rows:
            run_session(item)
        for text in block:
            call(text)
    return run_session, blocks, rows_of_block


def _in_turns(round_index: int, session_side, triton_side):
    """Both sides of one round, the session first in even rounds and Triton first in odd ones, so that a machine
    speeding up or slowing down within a round favours neither side over the rounds; returns (session, Triton)."""
    if round_index % 2:
        triton = triton_side()
        return session_side(), triton
    session = session_side()
    return session, triton_side()


def _latencies_ms(run, items) -> list[float]:
    """Milliseconds of each call of ``run`` on ``items`` in turn, after three untimed ones to warm this side's caches."""
    for item in items[:3]:
        run(item)
    times = []
    for item in items:
        t0 = time.perf_counter()
        run(item)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def latency_gap(grpc_url: str, model: str, onnx_path, tokenizer_json, texts: list[str], use_sdk: bool,
                rounds: int = 5, per_round: int = 80) -> dict:
    """Per round: p50 of the session over ``per_round`` texts and p50 of ``model`` over the same texts (gRPC, one
    request at a time), in turns (``_in_turns``); the gap is the median over rounds of (Triton p50 − session p50)."""
    call = load.make_caller(grpc_url, "grpc", model, use_sdk)
    run_session, blocks, rows_of_block = _prepared(onnx_path, tokenizer_json, call, texts, rounds, per_round)

    def p50_ms(run, items) -> float:
        return statistics.median(_latencies_ms(run, items))

    out = []
    for index, (block, rows) in enumerate(zip(blocks, rows_of_block)):
        s50, t50 = _in_turns(index, lambda: p50_ms(run_session, rows), lambda: p50_ms(call, block))
        out.append({"session_p50_ms": round(s50, 3), "triton_p50_ms": round(t50, 3), "gap_ms": round(t50 - s50, 3),
                    "first": "triton" if index % 2 else "session"})
    return {"model": model, "rounds": out, "texts_per_round": per_round,
            "median_gap_ms": round(statistics.median(r["gap_ms"] for r in out), 3),
            "session_p50_ms": round(statistics.median(r["session_p50_ms"] for r in out), 3),
            "triton_p50_ms": round(statistics.median(r["triton_p50_ms"] for r in out), 3)}


def throughput_ratio(grpc_url: str, model: str, concurrency: int, onnx_path, tokenizer_json, texts: list[str],
                     use_sdk: bool, rounds: int = 5, per_round: int = 80) -> dict:
    """Per round: the session's throughput over ``per_round`` texts one at a time and ``model``'s over the same texts
    at ``concurrency`` (gRPC, closed loop, as in the sweep, counted while ``concurrency`` requests are in flight:
    ``load.Point.throughput``), in turns (``_in_turns``); the ratio is the median over rounds of (Triton / session)."""
    run_session, blocks, rows_of_block = _prepared(onnx_path, tokenizer_json,
                                                   load.make_caller(grpc_url, "grpc", model, use_sdk), texts, rounds,
                                                   per_round)

    def session_side(rows):
        t0 = time.perf_counter()
        for item in rows:
            run_session(item)
        return len(rows) / (time.perf_counter() - t0)

    def triton_side(block):
        return load.run_point(lambda: load.make_caller(grpc_url, "grpc", model, use_sdk), block, concurrency,
                              len(block), warmup=1)

    out = []
    for index, (block, rows) in enumerate(zip(blocks, rows_of_block)):
        session_rate, point = _in_turns(index, lambda: session_side(rows), lambda: triton_side(block))
        triton_rate = point.throughput  # while `concurrency` requests were in flight (load.Point.throughput)
        out.append({"session_per_s": round(session_rate, 2), "triton_per_s": round(triton_rate, 2),
                    "triton_whole_run_per_s": round(point.requests / point.seconds, 2),
                    "errors": point.errors, "ratio": round(triton_rate / session_rate, 3),
                    "first": "triton" if index % 2 else "session"})
    return {"model": model, "concurrency": concurrency, "rounds": out, "texts_per_round": per_round,
            "median_ratio": round(statistics.median(r["ratio"] for r in out), 3),
            "session_per_s": round(statistics.median(r["session_per_s"] for r in out), 2),
            "triton_per_s": round(statistics.median(r["triton_per_s"] for r in out), 2)}


def one_text_tail(grpc_url: str, model: str, onnx_path, tokenizer_json, text: str, use_sdk: bool, rounds: int = 2,
                  per_round: int = 200) -> dict:
    """p50 and p99 of the session and of ``model`` (gRPC, one request at a time) over one text sent ``per_round``
    times a round, in turns (``_in_turns``). Every request is then the same, so a tail is the serving path's own
    (queueing, batcher delays, stalls), not the spread of the texts' lengths that a p99 over real texts holds."""
    call = load.make_caller(grpc_url, "grpc", model, use_sdk)
    run_session, (block,), (rows,) = _prepared(onnx_path, tokenizer_json, call, [text], 1, 1)
    session, triton = [], []
    for index in range(rounds):
        s, t = _in_turns(index, lambda: _latencies_ms(run_session, rows * per_round),
                         lambda: _latencies_ms(call, block * per_round))
        session += s
        triton += t

    def tail(times: list[float]) -> dict:
        out = load.percentiles(times)
        return {**out, "p99_over_p50": round(out["p99_ms"] / out["p50_ms"], 3)}

    return {"model": model, "text_chars": len(text), "requests": len(triton), "session": tail(session),
            "triton": tail(triton)}
