"""Per-call overhead of the SDK over raw tritonclient: the same text, the same protocol, sequential calls.

    .venv/bin/python -m perf.sdk_overhead --urls grpc://127.0.0.1:8001,http://127.0.0.1:8000

For each URL: ``--calls`` calls of ``NerClient.extract(text)`` and as many raw calls of ``perf.triton_calls``
(input tensor built, ``infer``, ``ENTITIES`` read, its JSON parsed), interleaved one by one so that a busy machine slows both
alike; prints the median per-call times and their ratio, and writes them as JSON to ``--output``. The server
answers a repeated text from its response cache, so the times are mostly client and transport: the ratio is an
upper bound of what the SDK adds to a real call; ``--distinct`` sends a new text each call (cache misses, the
model runs), for the SDK's share of a real call.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

from ner_client import NerClient
from ner_client._core import resolve_target
from ner_client.settings import Setting, SettingGroup, boolean, comma_list, positive_int

from . import triton_calls
from .servers import REPO_ROOT

TEXT = "张三在北京的清华大学读书。"

SETTINGS = SettingGroup("NER_PERF_OVERHEAD_", (
    Setting("urls", ("grpc://127.0.0.1:8001", "http://127.0.0.1:8000"), "running servers, comma-separated, each with a "
            "scheme (or all with --protocol)", type=comma_list),
    Setting("protocol", None, "the protocol of URLs without a scheme", choices=("grpc", "http")),
    Setting("model", "ner", "the ensemble to call"),
    Setting("calls", 300, "calls of each kind per URL", type=positive_int),
    Setting("warmup", 20, "calls of each kind before timing", type=positive_int),
    Setting("distinct", False, "a new text each call: no response-cache hits, the model runs", type=boolean),
    Setting("output", REPO_ROOT / "build" / "client_overhead.json", "JSON report", type=Path,
            shown="build/client_overhead.json"),
), title="SDK overhead")


def text_for(i: int, token: str | None) -> str:
    return f"{TEXT}{token}-{i}" if token else TEXT


def measure(url: str, protocol: str | None, model: str | None, calls: int, warmup: int, distinct: bool) -> dict:
    target = resolve_target(url, protocol, model, None)
    raw_client = triton_calls.client(target.protocol, target.url)

    def raw(text: str = TEXT) -> list[list[dict]]:
        return triton_calls.infer(target.protocol, target.url, [text], target.model, connection=raw_client)

    sdk = NerClient(target.url, target.protocol, target.model)
    assert [e.to_dict() for e in sdk.extract(TEXT)] == raw()[0], "the SDK and raw tritonclient disagree"
    for _ in range(warmup):
        raw()
        sdk.extract(TEXT)
    raw_times, sdk_times = [], []
    token = uuid.uuid4().hex[:8] if distinct else None  # texts unseen by the server, in this run and any other
    for i in range(calls):
        # alternate which goes first, so neither always follows the other
        order = ((raw, raw_times, text_for(2 * i, token)), (sdk.extract, sdk_times, text_for(2 * i + 1, token)))
        for call, times, text in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            call(text)
            times.append(time.perf_counter() - start)
    sdk.close()
    raw_client.close()
    raw_median, sdk_median = statistics.median(raw_times), statistics.median(sdk_times)
    return {
        "url": target.display,
        "protocol": target.protocol,
        "model": target.model,
        "calls": calls,
        "distinct_texts": distinct,
        "raw_median_ms": round(raw_median * 1e3, 4),
        "sdk_median_ms": round(sdk_median * 1e3, 4),
        "overhead_us": round((sdk_median - raw_median) * 1e6, 1),
        "ratio": round(sdk_median / raw_median, 4),
    }


def main(argv: list[str] | None = None) -> int:
    args = SETTINGS.parse(argv, prog="python -m perf.sdk_overhead", description=__doc__)
    urls = args.urls
    results = []
    for url in urls:
        result = measure(url, args.protocol, args.model, args.calls, args.warmup, args.distinct)
        results.append(result)
        print(f"{result['protocol']:>4} {result['url']}: raw {result['raw_median_ms']:.3f} ms, "
              f"SDK {result['sdk_median_ms']:.3f} ms per call (median of {args.calls}); "
              f"ratio {result['ratio']:.3f}, overhead {result['overhead_us']:+.0f} µs", flush=True)
    report = {"text": TEXT, "python": sys.version.split()[0], "machine": platform.machine(), "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
