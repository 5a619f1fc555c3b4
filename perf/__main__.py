"""python -m perf — runs the whole benchmark suite and writes results.json, report.md and PNG plots into
perf/results/<UTC time>/ (and perf/results/latest).

    bash perf/setup_tools.sh                 # once: perf_analyzer 2.51.0, libb64, locust, matplotlib (idempotent)
    .venv/bin/python -m perf                 # the full suite, both model sizes (about 15-20 minutes on a quiet machine)
    .venv/bin/python -m perf --quick         # both models, few requests (minutes): checks the suite end to end
    .venv/bin/python -m perf --smoke         # the tiny model in both slots, a few requests (what CI runs)

Run it on a quiet machine: every speed figure is shared with whatever else runs on the cores (the report marks a run
that started beside other work as polluted).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .suite import SIZES, Settings, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", default=os.environ.get("PERF_SMOKE") == "1",
                        help="a few requests on the tiny model in both slots, seconds long [PERF_SMOKE=1]")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("PERF_QUICK") == "1",
                        help="both real models with few requests (minutes): an end-to-end check, not figures to quote "
                             "[PERF_QUICK=1]")
    parser.add_argument("--sizes", default=os.environ.get("PERF_SIZES", ",".join(SIZES)),
                        help=f"model sizes to run, comma-separated, of {','.join(SIZES)} [PERF_SIZES]")
    parser.add_argument("--no-tuning", action="store_true", default=os.environ.get("PERF_NO_TUNING") == "1",
                        help="skip the sweep over serving variants [PERF_NO_TUNING=1]")
    parser.add_argument("--output", type=Path, default=os.environ.get("PERF_OUTPUT"),
                        help="results folder (default perf/results/<UTC time>) [PERF_OUTPUT]")
    args = parser.parse_args(argv)
    settings = Settings.smoke_settings() if args.smoke else Settings.quick_settings() if args.quick else Settings()
    sizes = tuple(s.strip() for s in args.sizes.split(",") if s.strip())
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {SIZES}")
    settings.sizes = sizes
    settings.tuning = not args.no_tuning
    os.environ.setdefault("PERF_COMMAND", "python -m perf " + " ".join(argv if argv is not None else sys.argv[1:]))
    out = run(settings, args.output)
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
