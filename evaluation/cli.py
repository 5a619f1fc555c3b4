"""The evaluation commands' settings and entry points.

``python -m evaluation`` scores a BIO file through a running Triton server, via the client SDK: entity-level precision,
recall and F1 (exact type and boundaries), overall and per type, for each ensemble (``ner`` = INT8 and ``ner_fp32`` by
default), written as JSON and printed as a table. With ``--in-process REPOSITORY`` the same texts also go through that
repository's FP32 ONNX file and decoder code in process, and the report says whether the served FP32 entities equal
them exactly.

    python -m evaluation --url 127.0.0.1:8001 --in-process build/model_repository

``python -m evaluation.precision_check`` compares INT8 with FP32 in process on the same texts.

``python -m evaluation.robustness`` scores MSRA dev (or test) clean and perturbed (emoji, rare characters, Latin
pieces, width variants, spaces and line breaks, joined sentences, Traditional characters) and the hand-written
social-media fixture, through the served ensembles and in process (docs/robustness.md).

``python -m evaluation.other_sources`` scores text of another source (Resume NER dev) on the types it shares with
MSRA, beside Baidu LAC's untrained tagger (docs/robustness.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ner_client.settings import (TRITON_PROTOCOL, TRITON_URL, Setting, SettingGroup, comma_list, named_type,
                                 non_negative_int, positive_int, word_list)
from ner_model.data import DATA_DIR

BIO_FILE = Setting("file", None, "BIO file, char<TAB>tag per line", type=Path, shown="msra/test.bio of --data-dir")
REPOSITORY = Setting("repository", Path("build/model_repository"), "model repository (as the exporter wrote it)",
                     type=Path, env="NER_MODEL_REPOSITORY")
IN_PROCESS = Setting("in_process", None, "model repository to also run in process, FP32", type=Path)
BATCH_SIZE = Setting("batch_size", 16, "texts per request", type=positive_int)

SETTINGS = SettingGroup("NER_EVAL_", (
    BIO_FILE,
    DATA_DIR,
    TRITON_URL,
    TRITON_PROTOCOL,
    Setting("models", ("ner", "ner_fp32"), "ensembles to score", type=word_list),
    Setting("limit", 0, "score only this many sentences (0: all)", type=non_negative_int),
    Setting("offset", 0, "skip this many sentences first", type=non_negative_int),
    BATCH_SIZE,
    IN_PROCESS,
    Setting("output", Path("build/evaluation/report.json"), "JSON report", type=Path),
), "evaluation")

PRECISION_CHECK_SETTINGS = SettingGroup("NER_EVAL_", (
    REPOSITORY,
    BIO_FILE,
    DATA_DIR,
    Setting("output", Path("build/evaluation/precision_check.json"), "JSON report", type=Path,
            env="NER_EVAL_PRECISION_OUTPUT"),
), "INT8 against FP32")


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "social.jsonl"
ROBUSTNESS_KINDS = ("emoji", "rare", "latin", "width", "space", "joined", "traditional")


@named_type("list")
def kind_list(text) -> tuple[str, ...]:
    kinds = word_list(text)
    unknown = [k for k in kinds if k not in ROBUSTNESS_KINDS]
    if unknown:
        raise ValueError(f"unknown kind {', '.join(unknown)} (kinds: {', '.join(ROBUSTNESS_KINDS)})")
    return kinds


@named_type("comma list")
def rate_list(text) -> tuple[float, ...]:
    """Comma-separated shares of gaps, each more than 0 and at most 1."""
    rates = tuple(float(r) for r in comma_list(text)) if isinstance(text, str) else tuple(text)
    if any(not 0 < r <= 1 for r in rates):
        raise ValueError(f"rates are shares of gaps, more than 0 and at most 1, not {text}")
    return rates


ROBUSTNESS_SETTINGS = SettingGroup("NER_EVAL_", (
    Setting("split", "dev", "MSRA split: dev (the last --dev-size training sentences, as training carves it) or test "
            "(score test once per issue, on the final candidate)", choices=("dev", "test")),
    Setting("file", None, "BIO file to perturb instead of --split", type=Path),
    DATA_DIR,
    Setting("dev_size", 3000, "size of the dev split", type=positive_int),
    TRITON_URL,
    TRITON_PROTOCOL,
    Setting("models", ("ner", "ner_fp32"), "ensembles to score (empty: none, in process only)", type=word_list),
    Setting("limit", 0, "use only the first N sentences (0: all)", type=non_negative_int),
    Setting("seed", 0, "seed of the perturbations: the same seed gives the same perturbed texts", type=int),
    Setting("rates", (0.05, 0.2), "shares of the free gaps that get a piece", type=rate_list),
    Setting("kinds", ROBUSTNESS_KINDS, "perturbations to score", type=kind_list),
    Setting("join_size", 4, "sentences per text of the joined kind", type=positive_int),
    Setting("fixture", FIXTURE, "hand-written web and social-media texts (JSON lines); empty: none", type=Path,
            shown="evaluation/fixtures/social.jsonl"),
    BATCH_SIZE,
    IN_PROCESS,
    Setting("output", Path("build/evaluation/robustness.json"), "JSON report", type=Path,
            env="NER_EVAL_ROBUSTNESS_OUTPUT"),
), "robustness")


OTHER_SOURCES_SETTINGS = SettingGroup("NER_EVAL_", (
    Setting("file", None, "Resume NER file (char, space, BMES tag per line)", type=Path,
            shown="resume/dev.char.bmes of --data-dir"),
    DATA_DIR,
    TRITON_URL,
    TRITON_PROTOCOL,
    Setting("models", ("ner", "ner_fp32"), "ensembles to score (empty: none, in process and LAC only)",
            type=word_list),
    Setting("limit", 0, "use only the first N sentences (0: all)", type=non_negative_int),
    BATCH_SIZE,
    IN_PROCESS,
    Setting("output", Path("build/evaluation/other_sources.json"), "JSON report", type=Path,
            env="NER_EVAL_OTHER_SOURCES_OUTPUT"),
), "other sources")


def bio_file(args) -> Path:
    from ner_model.data import msra_file

    return args.file or msra_file("test", args.data_dir)


def _reported(output: Path, build, show) -> int:
    """A scoring command's end: ``build()`` makes the report (a server that cannot answer ends the command with 3), it
    is written to ``output`` as JSON and shown by ``show``."""
    from ner_client import NerError

    from .served import write_report

    try:
        report = build()
    except NerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    write_report(report, output)
    show(report)
    print(f"wrote {output}")
    return 0


def main(argv=None) -> int:
    from .served import evaluate, print_report

    args = SETTINGS.parse(argv, prog="python -m evaluation", description=__doc__)
    return _reported(args.output, lambda: evaluate(
        bio_file(args), args.models, url=args.url, protocol=args.protocol, limit=args.limit, offset=args.offset,
        batch_size=args.batch_size, in_process=args.in_process), print_report)


def precision_check_main(argv=None) -> int:
    from .precision_check import precision_check
    from .served import write_report

    args = PRECISION_CHECK_SETTINGS.parse(argv, prog="python -m evaluation.precision_check", description=__doc__)
    report = precision_check(args.repository, bio_file(args))
    write_report(report, args.output)
    return 0


def robustness_main(argv=None) -> int:
    from .robustness import benchmark, load_fixture, load_sentences, print_report

    args = ROBUSTNESS_SETTINGS.parse(argv, prog="python -m evaluation.robustness", description=__doc__)
    source, sentences = load_sentences(args.split, args.data_dir, args.dev_size, args.file, args.limit)
    fixture = load_fixture(args.fixture) if args.fixture and str(args.fixture) not in ("", ".") else []
    return _reported(args.output, lambda: {
        "split": None if args.file else args.split, "source": source, "fixture": str(args.fixture) if fixture else None,
        **benchmark(sentences, fixture, args.models, url=args.url, protocol=args.protocol, batch_size=args.batch_size,
                    in_process=args.in_process, kinds=args.kinds, rates=args.rates, seed=args.seed,
                    join_size=args.join_size)}, print_report)


def other_sources_main(argv=None) -> int:
    from .other_sources import RESUME_DEV, evaluate, print_report, read_bmes

    args = OTHER_SOURCES_SETTINGS.parse(argv, prog="python -m evaluation.other_sources", description=__doc__)
    path = args.file or Path(args.data_dir) / RESUME_DEV
    sentences = read_bmes(path)[: args.limit or None]
    return _reported(args.output, lambda: {
        "source": str(path), "sentences": len(sentences), "gold_entities": sum(len(gold) for _, gold, _ in sentences),
        "scores": evaluate(sentences, args.models, url=args.url, protocol=args.protocol, batch_size=args.batch_size,
                           in_process=args.in_process)}, print_report)
