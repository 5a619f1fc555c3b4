"""Memory of a running server: the proportional set size (PSS) of tritonserver and every process below it (one
Python-backend stub per model instance), from ``/proc/<pid>/smaps_rollup``. PSS splits shared pages between the
processes that map them, so the sum over the tree counts every page once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from serving.processes import STUB_BINARY, cmdline, process_tree


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def command_name(pid: int) -> str:
    """A short name: the model instance a stub serves (its argv names it), else the executable."""
    argv = cmdline(pid)
    if argv and argv[0].endswith(STUB_BINARY) and len(argv) >= 8:
        return argv[-2]  # e.g. encoder_int8_0_0
    return Path(argv[0]).name if argv else "?"


def tree_pss(pid: int) -> dict:
    per_process = {}
    for p in process_tree(pid):
        name = command_name(p)
        while name in per_process:
            name += "'"
        per_process[name] = pss_bytes(p)
    return {"total_bytes": sum(per_process.values()), "processes": per_process}


class PeakSampler:
    """Samples the tree's PSS in a thread while load runs; keeps the largest total and its breakdown."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.pid, self.interval = pid, interval
        self.peak: dict = {"total_bytes": 0, "processes": {}}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            sample = tree_pss(self.pid)
            self.samples += 1
            if sample["total_bytes"] > self.peak["total_bytes"]:
                self.peak = sample
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        final = tree_pss(self.pid)
        if final["total_bytes"] > self.peak["total_bytes"]:
            self.peak = final


def mb(value: int) -> float:
    return round(value / 1e6, 1)
