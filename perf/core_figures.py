"""Serving-core figures against a running server, over one protocol: single-request latency of both ensembles at
concurrency 1, encoder batching under 16 concurrent clients (Triton's statistics), and a response-cache hit.

    .venv/bin/python -m perf.core_figures --url 127.0.0.1:8001 --output build/figures/core-grpc.json
    .venv/bin/python -m perf.core_figures --url http://127.0.0.1:8000 --output build/figures/core-http.json
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ner_client.settings import TRITON_PROTOCOL, TRITON_URL, Setting, SettingGroup, positive_int

from .servers import REPO_ROOT, encoder_model, model_statistics
from . import texts as msra
from .triton_calls import client, infer

DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}

SETTINGS = SettingGroup("NER_PERF_FIGURES_", (
    TRITON_URL,
    TRITON_PROTOCOL,
    Setting("requests", 300, "texts (the first sentences of MSRA test) per figure", type=positive_int),
    Setting("output", REPO_ROOT / "build" / "figures" / "core.json", "where the figures go", type=Path,
            shown="build/figures/core.json"),
), title="python -m perf.core_figures")


def endpoint(url: str | None, protocol: str | None) -> tuple[str, str]:
    """(protocol, host:port) from a URL that may carry the protocol as its scheme."""
    scheme, _, rest = (url or "").rpartition("://")
    protocol = protocol or {"https": "http"}.get(scheme, scheme) or "grpc"
    return protocol, rest or DEFAULT_URLS[protocol]


def fresh(text: str) -> str:
    """The text with a suffix of its own, which keeps the response cache out of a measurement."""
    return f"{text}{uuid.uuid4().hex[:6]}"


def latency(protocol: str, url: str, model: str, texts: list[str]) -> dict:
    connection = client(protocol, url)
    infer(protocol, url, ["预热"], model, connection)
    times = []
    for text in texts:
        text = fresh(text)
        started = time.perf_counter()
        infer(protocol, url, [text], model, connection)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"requests": len(times), "p50_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3)}


def batching(protocol: str, url: str, model: str, precision: str, texts: list[str], clients: int = 16) -> dict:
    before = model_statistics(url, protocol)
    encoder = encoder_model(before, precision)
    before = before[encoder]

    def worker(chunk):
        connection = client(protocol, url)
        for text in chunk:
            infer(protocol, url, [fresh(text)], model, connection)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, [texts[i::clients] for i in range(clients)]))
    elapsed = time.perf_counter() - started
    after = model_statistics(url, protocol)[encoder]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    return {"clients": clients, "requests": len(texts), "encoder": encoder, "encoder_inference_count": inferences,
            "encoder_execution_count": executions, "mean_rows_per_execution": round(inferences / max(executions, 1), 2),
            "throughput_rps": round(len(texts) / elapsed, 1)}


def cache_hit(protocol: str, url: str, model: str) -> dict:
    text = fresh("张三在北京")
    before = model_statistics(url, protocol)[model]["cache_hit_count"]
    infer(protocol, url, [text], model)
    infer(protocol, url, [text], model)
    return {"model": model,
            "cache_hits_for_one_repeat": model_statistics(url, protocol)[model]["cache_hit_count"] - before}


def main(argv=None) -> int:
    args = SETTINGS.parse(argv, prog="python -m perf.core_figures", description=__doc__)
    protocol, url = endpoint(args.url, args.protocol)
    texts = msra.texts(args.requests)
    figures = {
        "protocol": protocol,
        "texts": f"first {len(texts)} sentences of MSRA test, mean {statistics.mean(map(len, texts)):.0f} chars",
        "latency_c1": {model: latency(protocol, url, model, texts) for model in ("ner", "ner_fp32")},
        "batching_c16": [batching(protocol, url, m, p, texts) for m, p in (("ner", "int8"), ("ner_fp32", "fp32"))],
        "cache": cache_hit(protocol, url, "ner"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
