"""Training an ensemble: one ``python -m training`` process per member, all at once, each with its share of the
threads; ``ner_model.ensemble.LacBiGruCrfEnsemble`` then combines the trained members into one checkpoint."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

PROGRESS_PREFIX = "@progress "  # a member's machine-readable progress line: "@progress <step> <total>"


def member_seeds(seed: int, members: int) -> list[int]:
    return [seed + i for i in range(members)]


def train_members(argv_for_member, seeds: list[int], member_dirs: list[Path], show_progress: bool) -> None:
    """Run one ``python -m training`` process per member at once (``argv_for_member`` gives each its share of the
    threads and ``--progress-lines``); their evaluation lines are printed with the member's seed, their steps drive one
    progress bar each."""
    procs = []
    for seed, directory in zip(seeds, member_dirs):
        cmd = [sys.executable, "-m", "training", *argv_for_member(seed, directory)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1))
    bars = [None] * len(procs)
    if show_progress:
        from tqdm import tqdm

        bars = [tqdm(total=1, desc=f"member seed {s}", unit="step", position=i, dynamic_ncols=True, mininterval=2.0)
                for i, s in enumerate(seeds)]
    lock = threading.Lock()

    def relay(i: int) -> None:
        for line in procs[i].stdout:
            line = line.rstrip("\n")
            with lock:
                if line.startswith(PROGRESS_PREFIX):
                    if bars[i] is not None:
                        step, total = (int(x) for x in line[len(PROGRESS_PREFIX):].split())
                        bars[i].total = total
                        bars[i].n = step
                        bars[i].refresh()
                    continue
                text = f"[seed {seeds[i]}] {line}"
                if bars[i] is not None:
                    bars[i].write(text)
                else:
                    print(text, flush=True)

    threads = [threading.Thread(target=relay, args=(i,), daemon=True) for i in range(len(procs))]
    for t in threads:
        t.start()
    try:
        codes = [p.wait() for p in procs]
    finally:  # an interrupted run leaves no member training on
        for p in procs:
            if p.poll() is None:
                p.terminate()
    for t in threads:
        t.join()
    for bar in bars:
        if bar is not None:
            bar.close()
    failed = [s for s, c in zip(seeds, codes) if c != 0]
    if failed:
        raise SystemExit(f"ensemble members with seeds {failed} failed (exit codes {codes})")


def remaining_minutes(t_start: float, max_minutes: float, reserve_minutes: float) -> float:
    return max(1.0, max_minutes - (time.time() - t_start) / 60 - reserve_minutes)
