"""What a result depends on besides the code: the machine, the load on it, and the versions in use."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata

from serving.server import REPO_ROOT

FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                     "avx512_bf16", "amx_int8", "amx_bf16")
PACKAGES = ("onnxruntime", "onnx", "torch", "transformers", "tokenizers", "numpy", "tritonclient", "nvidia-pytriton",
            "locust", "matplotlib", "ner-client")


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def cpu_info() -> dict:
    model, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "model": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "flags": {flag: flag in flags for flag in FLAGS_OF_INTEREST},
        "vnni": "avx512_vnni" in flags or "avx_vnni" in flags,
    }


def memory_total_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def busy_processes(min_cpu: float = 20.0) -> list[str]:
    """Other processes using a core noticeably right now (the figures of a run beside them are polluted)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu", "--no-headers"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    own = os.getpid()
    busy = []
    for line in out.splitlines()[:10]:
        pid, cpu, comm = line.split(None, 2)
        if int(pid) != own and float(cpu) >= min_cpu:
            busy.append(f"{comm.strip()} (pid {pid}, {cpu}% CPU since start)")
    return busy


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Share of all cores busy over ``seconds`` (from /proc/stat), before the suite starts its own work."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]
        return idle, sum(values)

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return round(1 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["python"] = platform.python_version()
    return found


def git_revision() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty_files": len(git("status", "--porcelain").splitlines())}


def describe_machine() -> dict:
    busy = cpu_busy_fraction()
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu_info(),
        "memory_bytes": memory_total_bytes(),
        "load_average_at_start": load_average(),
        "cpu_busy_before_start": busy,
        "busy_processes_at_start": busy_processes(),
        # A run beside other work on a 2-core machine measures the sharing, not the service.
        "contended": busy > 0.15,
    }
