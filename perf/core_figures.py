"""Serving-core figures against a running server: single-request latency over HTTP and gRPC at concurrency 1,
encoder batching under 16 concurrent clients (Triton's statistics), and a response-cache hit.

    .venv/bin/python -m perf.core_figures --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 --output build/figures/core.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from export.paths import msra_file

MODULES = {"http": httpclient, "grpc": grpcclient}


def msra_sentences(limit: int) -> list[str]:
    sentences, current = [], []
    with open(msra_file("test"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                current.append(line.split("\t")[0])
            elif current:
                sentences.append("".join(current))
                current = []
                if len(sentences) == limit:
                    break
    return sentences


def request(protocol: str, client, model: str, text: str):
    array = np.array([[text.encode("utf-8")]], dtype=np.object_)
    tensor = MODULES[protocol].InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(array)
    return client.infer(model, [tensor]).as_numpy("ENTITIES")


def latency(protocol: str, url: str, model: str, texts: list[str]) -> dict:
    client = MODULES[protocol].InferenceServerClient(url)
    request(protocol, client, model, "预热")
    times = []
    for text in texts:
        # A fresh suffix per call keeps the response cache out of the measurement.
        text = f"{text}{uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        request(protocol, client, model, text)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"requests": len(times), "p50_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3)}


def model_stats(url: str, model: str):
    (stats,) = grpcclient.InferenceServerClient(url).get_inference_statistics(model).model_stats
    return stats


def batching(grpc_url: str, model: str, encoder: str, texts: list[str], clients: int = 16) -> dict:
    before = model_stats(grpc_url, encoder)

    def worker(chunk):
        client = grpcclient.InferenceServerClient(grpc_url)
        for text in chunk:
            request("grpc", client, model, f"{text}{uuid.uuid4().hex[:6]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, [texts[i::clients] for i in range(clients)]))
    elapsed = time.perf_counter() - started
    after = model_stats(grpc_url, encoder)
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    return {"clients": clients, "requests": len(texts), "encoder": encoder, "encoder_inference_count": inferences,
            "encoder_execution_count": executions, "mean_rows_per_execution": round(inferences / max(executions, 1), 2),
            "throughput_rps": round(len(texts) / elapsed, 1)}


def cache_hit(grpc_url: str, model: str) -> dict:
    client = grpcclient.InferenceServerClient(grpc_url)
    text = f"张三在北京{uuid.uuid4().hex}"
    before = model_stats(grpc_url, model).inference_stats.cache_hit.count
    request("grpc", client, model, text)
    request("grpc", client, model, text)
    return {"model": model, "cache_hits_for_one_repeat": model_stats(grpc_url, model).inference_stats.cache_hit.count - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", default=os.environ.get("NER_HTTP_URL", "127.0.0.1:8000"))
    parser.add_argument("--grpc", default=os.environ.get("NER_GRPC_URL", "127.0.0.1:8001"))
    parser.add_argument("--requests", type=int, default=int(os.environ.get("NER_FIGURES_REQUESTS", "300")))
    parser.add_argument("--output", type=Path, default=Path(os.environ.get("NER_FIGURES_OUTPUT", "build/figures/core.json")))
    args = parser.parse_args()
    texts = msra_sentences(args.requests)
    figures = {
        "texts": f"first {len(texts)} sentences of MSRA test, mean {np.mean([len(t) for t in texts]):.0f} chars",
        "latency_c1": {f"{model}/{protocol}": latency(protocol, getattr(args, protocol), model, texts)
                       for model in ("ner", "ner_fp32") for protocol in ("http", "grpc")},
        "batching_c16": [batching(args.grpc, m, e, texts) for m, e in (("ner", "encoder_int8"), ("ner_fp32", "encoder_fp32"))],
        "cache": cache_hit(args.grpc, "ner"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    print(json.dumps(figures, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
