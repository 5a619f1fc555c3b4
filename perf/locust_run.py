"""Runs ``perf/locustfile.py`` headless against loopback addresses only, bounded in time and request count, and
starts (and stops) the web UI's gateway (``python -m webui``) for the WebSocket user when it can."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from export.paths import REPO_ROOT
from serving.server import free_port

LOCUSTFILE = REPO_ROOT / "perf" / "locustfile.py"


def _require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    address = socket.gethostbyname(host)
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"locust targets loopback addresses only, not {url}")


@contextmanager
def webui_gateway(triton_grpc_url: str, log_path: Path, timeout: float = 60.0):
    """Yields the gateway's WebSocket URL, or a string explaining why there is none (as ``None, reason``)."""
    if not (REPO_ROOT / "webui" / "__main__.py").exists():
        yield None, "webui/ is not in this checkout"
        return
    port = free_port()
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "webui", "--host", "127.0.0.1", "--port", str(port), "--triton-url", triton_grpc_url,
         "--triton-protocol", "grpc", "--models", "ner,ner_fp32", "--log-level", "warning"],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        reason = None
        while True:
            if process.poll() is not None:
                reason = f"python -m webui exited with code {process.returncode}: " + \
                    " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-2:])
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                reason = f"python -m webui did not answer /healthz within {timeout:.0f} s"
                break
            time.sleep(0.3)
        yield (None, reason) if reason else (f"ws://127.0.0.1:{port}/ws", None)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


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
    env = dict(os.environ, PERF_TEXTS=str(texts_file), PERF_MODEL=model, PERF_MAX_REQUESTS=str(max_requests),
               PERF_WS_URL=ws_url or "")
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


if __name__ == "__main__":  # python -m perf.locust_run USER_CLASS http://127.0.0.1:PORT TEXTS.json [ws://...]
    print(json.dumps(run(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path("/tmp/perf-locust"), 4, 10, 100,
                         ws_url=sys.argv[4] if len(sys.argv) > 4 else None), indent=2))
