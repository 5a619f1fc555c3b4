"""Encoders' cost side by side: in-process ONNX Runtime sessions at batch 1, MSRA test sentences, alternating rounds.

    .venv/bin/python -m perf.encoder_cost student=build/model_repository teacher=build/teacher_repository

Each NAME=REPOSITORY names an exported model repository; its INT8 encoder (``--precision``) is timed on the same
tokenised rows as the others (the first repository's tokenizer), one round after another, and the median of the
rounds after the first is reported in texts/s per thread count, with each encoder's cost relative to the first.
What the default model's card quotes for "costs no more than one member's".
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from ner_client.settings import Setting, SettingGroup, positive_int

from .baselines import ort_session, rows_per_text, session_runner
from .texts import texts as msra_texts

SETTINGS = SettingGroup("NER_PERF_COST_", (
    Setting("repositories", None, "NAME=REPOSITORY pairs, comma-separated", required=True, positional=True),
    Setting("precision", "int8", "which encoder of each repository", choices=("int8", "fp32")),
    Setting("texts", 300, "MSRA test sentences per round", type=positive_int),
    Setting("rounds", 4, "alternating rounds (the first is a warm-up)", type=positive_int),
    Setting("threads", "1,2", "ONNX Runtime thread counts to measure, comma-separated"),
), title="python -m perf.encoder_cost")


def measure(encoders: dict[str, Path], tokenizer_json: Path, texts: list[str], rounds: int,
            threads: int) -> dict[str, float]:
    """Median texts/s of each encoder over the rounds after the first, each round running every encoder in turn."""
    rows = rows_per_text(tokenizer_json, texts)
    runners = {name: session_runner(ort_session(path, threads)) for name, path in encoders.items()}
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            for text_rows in rows:
                run(text_rows)
            rates[name].append(len(rows) / (time.perf_counter() - started))
    return {name: round(statistics.median(values[1:] or values), 1) for name, values in rates.items()}


def main(argv=None) -> int:
    args = SETTINGS.parse(argv, prog="python -m perf.encoder_cost", description=__doc__)
    repositories = dict(pair.split("=", 1) for pair in args.repositories.split(","))
    encoders = {name: Path(repo) / f"encoder_{args.precision}" / "1" / "model.onnx" for name, repo in repositories.items()}
    missing = [str(path) for path in encoders.values() if not path.exists()]
    if missing:
        print(f"error: no encoder at {', '.join(missing)}", file=sys.stderr)
        return 2
    tokenizer_json = Path(next(iter(repositories.values()))) / "tokenizer" / "1" / "tokenizer.json"
    texts = msra_texts(args.texts)
    first = next(iter(encoders))
    report = {}
    for threads in (int(t) for t in args.threads.split(",")):
        rates = measure(encoders, tokenizer_json, texts, args.rounds, threads)
        report[f"{threads} thread(s)"] = {name: {"texts_per_s": rate, "cost_vs_" + first: round(rates[first] / rate, 2)}
                                          for name, rate in rates.items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
