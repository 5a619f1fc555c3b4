"""python -m perf — runs the whole benchmark suite and writes results.json, report.md and PNG plots into
perf/results/<UTC time>/ (and perf/results/latest).

    bash perf/setup_tools.sh                 # once: perf_analyzer 2.51.0, libb64, locust, matplotlib (idempotent)
    .venv/bin/python -m perf                 # the full suite, both model sizes (about 15-20 minutes on a quiet machine)
    .venv/bin/python -m perf --quick         # both models, few requests (minutes): checks the suite end to end
    .venv/bin/python -m perf --smoke         # the default model and the tiny one for BERT-base, a few requests (what CI runs)

Run it on a quiet machine: every speed figure is shared with whatever else runs on the cores (the report marks a run
that started beside other work as polluted).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ner_client.settings import Setting, SettingGroup, boolean, comma_list

SIZES = ("default", "bert-base")

SETTINGS = SettingGroup("NER_PERF_", (
    Setting("smoke", False, "a few requests, the tiny model standing in for BERT-base; minutes long", type=boolean),
    Setting("quick", False, "both real models with few requests (minutes): an end-to-end check, not figures to quote",
            type=boolean),
    Setting("sizes", SIZES, "model sizes to run, comma-separated", type=comma_list),
    Setting("tuning", True, "the sweep over serving variants", type=boolean),
    Setting("output", None, "results folder", type=Path, shown="perf/results/<UTC time>"),
    Setting("default_model", None, "checkpoint measured in the default slot", type=Path,
            shown="models/default, else the tiny generated model"),
), title="python -m perf")


def main(argv=None) -> int:
    parser = SETTINGS.parser("python -m perf", __doc__)
    args = parser.parse_args(argv)
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {','.join(SIZES)}")
    from .suite import Settings, run

    settings = Settings.smoke_settings() if args.smoke else Settings.quick_settings() if args.quick else Settings()
    settings.sizes = args.sizes
    settings.tuning = args.tuning
    settings.default_model = args.default_model
    settings.command = "python -m perf " + " ".join(argv if argv is not None else sys.argv[1:])
    out = run(settings, args.output)
    print(f"report: {out / 'report.md'}")
    return 0
