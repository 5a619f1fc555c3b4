"""Runs ``perf/locustfile.py`` headless against loopback addresses only, bounded in time and request count, and
starts (and stops) the web UI's gateway (``python -m webui``) for the WebSocket user."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from ner_client.settings import Setting, SettingGroup, non_negative_int
from serving.processes import free_port, stop, wait_for_http
from serving.server import REPO_ROOT, tail

LOCUSTFILE = REPO_ROOT / "perf" / "locustfile.py"

# What perf/locustfile.py reads: locust starts it, so its settings reach it through the environment.
LOCUST_SETTINGS = SettingGroup("NER_PERF_LOCUST_", (
    Setting("texts", None, "a JSON file holding a list of texts", type=Path, shown="one sample sentence"),
    Setting("model", "ner", "the ensemble to call"),
    Setting("ws_url", "ws://127.0.0.1:8080/ws", "the web gateway's WebSocket"),
    Setting("max_requests", 0, "the run stops once that many requests were answered, whatever its time limit (0: no "
            "bound)", type=non_negative_int),
), title="perf/locustfile.py")


def _require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    address = socket.gethostbyname(host)
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"locust targets loopback addresses only, not {url}")


@contextmanager
def webui_gateway(triton_grpc_url: str, log_path: Path, timeout: float = 60.0):
    """Yields ``(the gateway's WebSocket URL, None)``, or ``(None, why it did not start)``."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "webui", "--host", "127.0.0.1", "--port", str(port), "--triton-url",
             triton_grpc_url, "--triton-protocol", "grpc", "--models", "ner,ner_fp32", "--log-level", "warning"],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        problem = wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout, process)
        yield (None, f"{problem}: {tail(log_path, 2)}") if problem else (f"ws://127.0.0.1:{port}/ws", None)
    finally:
        stop(process)


def _parse_stats(path: Path) -> dict:
    """The final statistics of ``--json-file`` (locust's CSV misses the last seconds when a run is stopped early);
    percentiles from its response-time histogram (ms, rounded as locust rounds them)."""
    if not path.exists():
        return {}
    entries = [e for e in json.loads(path.read_text() or "[]") if e.get("num_requests")]
    if not entries:
        return {"requests": 0, "failures": 0}
    e = entries[0]
    histogram = sorted((float(ms), count) for ms, count in e["response_times"].items())
    total = sum(count for _, count in histogram)

    def percentile(q: float):
        seen = 0
        for ms, count in histogram:
            seen += count
            if seen >= q * total:
                return ms
        return histogram[-1][0] if histogram else None

    seconds = max(e["last_request_timestamp"] - e["start_time"], 1e-9)
    return {"name": e["name"], "requests": e["num_requests"], "failures": e["num_failures"],
            "throughput_per_s": round(e["num_requests"] / seconds, 2), "p50_ms": percentile(0.50),
            "p90_ms": percentile(0.90), "p95_ms": percentile(0.95), "p99_ms": percentile(0.99),
            "mean_ms": round(e["total_response_time"] / max(e["num_requests"], 1), 2),
            "max_ms": round(e["max_response_time"], 2)}


def run(user_class: str, host: str, texts_file: Path, workdir: Path, users: int, run_time_s: int, max_requests: int,
        model: str = "ner", ws_url: str | None = None) -> dict:
    """One headless locust run of one user class; returns its figures."""
    _require_loopback(host)
    if ws_url:
        _require_loopback(ws_url.replace("ws://", "http://"))
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = workdir / f"locust-{user_class}"
    values = {"texts": texts_file, "model": model, "max_requests": max_requests, "ws_url": ws_url or ""}
    env = dict(os.environ, **{LOCUST_SETTINGS.env_name(LOCUST_SETTINGS[k]): str(v) for k, v in values.items()})
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), user_class, "--headless", "--host", host,
               "-u", str(users), "-r", str(users), "-t", f"{run_time_s}s", "--stop-timeout", "10",
               "--json-file", str(prefix), "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=run_time_s + 90)
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        output = f"timeout: {err}"
    (workdir / f"locust-{user_class}.log").write_text(" ".join(command) + "\n\n" + output)
    result = {"user_class": user_class, "users": users, "run_time_limit_s": run_time_s, "max_requests": max_requests,
              "wall_seconds": round(time.perf_counter() - started, 2), "model": model,
              "target": ws_url or host, **_parse_stats(Path(f"{prefix}.json"))}
    if "requests" not in result:
        result["error"] = "no statistics written: " + " | ".join(output.strip().splitlines()[-3:])[-400:]
    return result

