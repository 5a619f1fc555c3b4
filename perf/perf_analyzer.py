"""Triton's own load tool, perf_analyzer 2.51.0 (installed by ``perf/setup_tools.sh`` into ``perf/.tools/``), against
the ensembles and the encoders alone, over gRPC and HTTP, with real MSRA text (``--input-data``), over a concurrency
sweep. Count windows (``--measurement-mode count_windows``), because time windows do not stabilise on 2 cores.

    .venv/bin/python -m perf.perf_analyzer --check     # prints the version, or why it cannot run
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from serving.server import REPO_ROOT

VERSION = "2.51.0"
TOOLS = REPO_ROOT / "perf" / ".tools" / f"tritonclient-{VERSION}"
BINARY = TOOLS / "bin" / "perf_analyzer"


def cudart_dir() -> Path | None:
    try:
        import nvidia.cuda_runtime as cuda_runtime
    except ImportError:
        return None
    for root in cuda_runtime.__path__:
        lib = Path(root) / "lib"
        if (lib / "libcudart.so.12").exists():
            return lib
    return None


def environment() -> dict:
    env = dict(os.environ)
    lib = cudart_dir()
    if lib is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def status() -> tuple[bool, str]:
    """Whether perf_analyzer runs here, and its version line or the reason it does not."""
    if not BINARY.exists():
        return False, f"{BINARY} missing: run `bash perf/setup_tools.sh`"
    if cudart_dir() is None:
        return False, "libcudart.so.12 missing: `pip install -r requirements/perf.txt` (nvidia-cuda-runtime-cu12)"
    try:
        out = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True, env=environment(), timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"perf_analyzer does not start: {err}"
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0 or "Version" not in text:
        return False, f"perf_analyzer does not start (exit {out.returncode}): {text[-300:]}"
    return True, text.splitlines()[0]


def ensemble_input_data(texts: list[str], path: Path) -> Path:
    """One step per text; a BYTES input takes strings (the batch axis is not part of the shape)."""
    path.write_text(json.dumps({"data": [{"TEXT": {"content": [t], "shape": [1]}} for t in texts]}, ensure_ascii=False))
    return path


def encoder_input_data(tokenizer_json: Path, texts: list[str], path: Path) -> Path:
    """The rows the tokenizer step would hand the encoder for each text (padded to their length bucket)."""
    from ner_pipeline import WindowConfig, encode_texts, load_tokenizer

    tokenizer, window = load_tokenizer(str(tokenizer_json)), WindowConfig()
    steps = []
    for text in texts:
        batch = encode_texts(tokenizer, [text], window)
        row = 0  # a text longer than one window is rare in MSRA; its first window stands for it here
        width = int(batch.input_ids.shape[1])
        steps.append({"input_ids": {"content": batch.input_ids[row].tolist(), "shape": [width]},
                      "attention_mask": {"content": batch.attention_mask[row].tolist(), "shape": [width]}})
    path.write_text(json.dumps({"data": steps}))
    return path


def _parse_csv(path: Path) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return {}
    header, values = rows[0], rows[1]
    out = {}
    for key, value in zip(header, values):
        try:
            number = float(value)
        except ValueError:
            continue
        if key == "Inferences/Second":
            out["throughput_per_s"] = round(number, 2)
        elif key == "Concurrency":
            out["concurrency"] = int(number)
        elif key.startswith("p") and key.endswith("latency"):
            out[f"{key.split()[0]}_ms"] = round(number / 1000, 3)
        elif key == "Avg latency":
            out["mean_ms"] = round(number / 1000, 3)
        else:  # client/server stage times, microseconds per request
            out[key.lower().replace(" ", "_").replace("+", "_").replace("/", "_") + "_ms"] = round(number / 1000, 3)
    return out


def _windows(output: str) -> list[tuple[float, float | None]]:
    """(throughput, p95 latency in ms) of each measurement window, from the verbose output."""
    found = []
    for line in output.splitlines():
        m = re.search(r"Pass \[\d+\] throughput: ([0-9.]+) infer/sec\.(?: p95 latency: ([0-9.]+) usec)?", line)
        if m:
            found.append((float(m.group(1)), float(m.group(2)) / 1000 if m.group(2) else None))
    return found


def run(model: str, url: str, protocol: str, input_data: Path, concurrency: int, request_count: int, workdir: Path,
        windows: int = 3, timeout: float = 300.0) -> dict:
    """One perf_analyzer measurement at one concurrency: ``windows`` count windows of ``request_count`` requests
    each, averaged. perf_analyzer's own stability rule (consecutive windows within a few percent) is not waited for,
    as it may never hold on 2 shared cores; the windows' spread is reported instead (``window_spread``: (max - min) /
    mean of the windows' throughputs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"{model}-{protocol}-c{concurrency}"
    out_csv = workdir / f"{tag}.csv"
    command = [
        str(BINARY), "-m", model, "-u", url, "-i", protocol, "--input-data", str(input_data),
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-mode", "count_windows", "--measurement-request-count", str(request_count),
        "--max-trials", str(windows), "--stability-percentage", "1000", "-v",
        "-f", str(out_csv), "--percentile", "95",
    ]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model, "protocol": protocol, "concurrency": concurrency, "error": f"timeout after {timeout} s"}
    (workdir / f"{tag}.log").write_text(" ".join(command) + "\n\n" + done.stdout + done.stderr)
    result = {"model": model, "protocol": protocol, "concurrency": concurrency,
              "wall_seconds": round(time.perf_counter() - started, 2)}
    if out_csv.exists():
        result.update(_parse_csv(out_csv))
    passes = _windows(done.stdout)[-windows:]
    if passes:
        throughputs = [t for t, _ in passes]
        mean = sum(throughputs) / len(throughputs)
        result["window_throughputs"] = throughputs
        result["window_spread"] = round((max(throughputs) - min(throughputs)) / mean, 3) if mean else None
        if "throughput_per_s" not in result:
            # perf_analyzer refuses to report when a window's p95 is far off the others (an outlier on shared
            # cores); the windows' own figures are kept, flagged.
            result["throughput_per_s"] = round(mean, 2)
            p95s = [p for _, p in passes if p is not None]
            if p95s:
                result["p95_ms"] = round(sorted(p95s)[len(p95s) // 2], 3)
            result["unstable"] = True
    if done.returncode != 0 and not passes or "throughput_per_s" not in result:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        result["error"] = f"exit {done.returncode}: " + " | ".join(tail)[-400:]
    return result


def sweep(model: str, url: str, protocol: str, input_data: Path, concurrencies: list[int], request_count: int,
          workdir: Path, on_point=None) -> list[dict]:
    out = []
    for concurrency in concurrencies:
        result = run(model, url, protocol, input_data, concurrency, max(request_count, 2 * concurrency), workdir)
        if on_point:
            on_point(result)
        out.append(result)
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m perf.perf_analyzer", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", required=True,
                        help="print perf_analyzer's version, or why it cannot run (exit 1)")
    parser.parse_args()
    ok, message = status()
    print(message)
    sys.exit(0 if ok else 1)
