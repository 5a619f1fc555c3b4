"""Closed-loop load through the project's client SDK (``ner_client.NerClient``): N threads, each with its own client,
each sending one text per request and waiting for the answer; every concurrency point is reported.

Until the SDK is installed, the same calls go through raw ``tritonclient`` (``raw_caller``); the results record
which one was used.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import triton_calls


def raw_caller(url: str, protocol: str, model: str) -> Callable[[str], object]:
    """One ``TEXT`` per request with raw tritonclient, as the SDK does it."""
    connection = triton_calls.client(protocol, url)
    return lambda text: triton_calls.infer(protocol, url, [text], model, connection)


def sdk_status() -> tuple[bool, str]:
    try:
        import ner_client  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any failure means: not usable
        return False, f"ner_client not importable ({type(err).__name__}: {err})"
    if not hasattr(ner_client, "NerClient"):
        return False, "ner_client has no NerClient"
    return True, f"ner_client {getattr(ner_client, '__version__', '')}".strip()


def sdk_caller(url: str, protocol: str, model: str) -> Callable[[str], object]:
    from ner_client import NerClient

    client = NerClient(url, protocol=protocol, model=model)
    return client.extract


def make_caller(url: str, protocol: str, model: str, use_sdk: bool) -> Callable[[str], object]:
    return sdk_caller(url, protocol, model) if use_sdk else raw_caller(url, protocol, model)


def percentiles(latencies_ms: list[float]) -> dict:
    if not latencies_ms:
        return {}
    values = np.asarray(latencies_ms)
    return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p90_ms": round(float(np.percentile(values, 90)), 3),
            "p95_ms": round(float(np.percentile(values, 95)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3),
            "mean_ms": round(statistics.fmean(values), 3), "max_ms": round(float(values.max()), 3)}


@dataclass
class Point:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list
    # Seconds from the start at which each answer arrived, and at which the last request was sent.
    completions_s: list = field(default_factory=list)
    last_sent_s: float | None = None

    @property
    def throughput(self) -> float:
        """Answers per second while ``concurrency`` requests were in flight: from the ``concurrency``-th answer
        (the pipeline is full) to the moment the last request was sent. What follows, the drain of the last requests
        at falling concurrency (one core idle while the last long text runs), belongs to no concurrency level;
        with too few answers in that window, answers over the whole run."""
        c = self.concurrency
        if self.last_sent_s is not None and len(self.completions_s) >= c + 1:
            ordered = sorted(self.completions_s)
            start = ordered[c - 1]
            inside = sum(1 for t in ordered[c:] if t <= self.last_sent_s)
            if inside >= max(8, c) and self.last_sent_s > start:
                return inside / (self.last_sent_s - start)
        return self.requests / self.seconds

    def summary(self) -> dict:
        return {"concurrency": self.concurrency, "requests": self.requests, "errors": self.errors,
                "seconds": round(self.seconds, 3), "throughput_per_s": round(self.throughput, 2),
                "throughput_whole_run_per_s": round(self.requests / self.seconds, 2),
                **percentiles(self.latencies_ms)}


def run_point(make: Callable[[], Callable[[str], object]], texts: list[str], concurrency: int, requests: int,
              warmup: int = 0) -> Point:
    """``requests`` calls over ``concurrency`` threads, texts taken in order (cycling); each thread makes its own
    client (an HTTP client must stay on the thread that made it) and sends ``warmup`` calls outside the measurement."""
    lock = threading.Lock()
    cursor = iter(range(requests))
    latencies: list[float] = []
    completions: list[float] = []
    last_sent: list[float] = []
    errors = [0]
    first_error: list[str] = []
    barrier = threading.Barrier(concurrency + 1)

    def fail(err: Exception) -> None:
        with lock:
            errors[0] += 1
            if not first_error:
                first_error.append(f"{type(err).__name__}: {err}")

    def worker(offset: int):
        call = None
        try:
            call = make()
            for j in range(warmup):
                call(texts[(offset + j) % len(texts)])
        except Exception as err:  # noqa: BLE001 - counted and reported
            fail(err)
        barrier.wait()
        while call is not None:
            with lock:
                index = next(cursor, None)
                if index == requests - 1:
                    last_sent.append(time.perf_counter())
            if index is None:
                return
            text = texts[index % len(texts)]
            started = time.perf_counter()
            try:
                call(text)
            except Exception as err:  # noqa: BLE001 - counted and reported
                fail(err)
                continue
            done = time.perf_counter()
            with lock:
                latencies.append((done - started) * 1000)
                completions.append(done)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    point = Point(concurrency, len(latencies), errors[0], seconds, latencies,
                  [t - started for t in completions], last_sent[0] - started if last_sent else None)
    if first_error:
        point.first_error = first_error[0]
    return point


def sweep(url: str, protocol: str, model: str, texts: list[str], concurrencies: list[int], requests: int,
          use_sdk: bool, on_point=None) -> list[dict]:
    out = []
    for concurrency in concurrencies:
        n = max(requests, 4 * concurrency)
        point = run_point(lambda: make_caller(url, protocol, model, use_sdk), texts, concurrency, n, warmup=2)
        summary = point.summary()
        if getattr(point, "first_error", None):
            summary["first_error"] = point.first_error
        if on_point:
            on_point(summary)
        out.append(summary)
    return out
