"""The evaluation commands' settings and entry points.

``python -m evaluation`` scores a BIO file through a running Triton server, via the client SDK: entity-level precision,
recall and F1 (exact type and boundaries), overall and per type, for each ensemble (``ner`` = INT8 and ``ner_fp32`` by
default), written as JSON and printed as a table. With ``--in-process REPOSITORY`` the same texts also go through that
repository's FP32 ONNX file and decoder code in process, and the report says whether the served FP32 entities equal
them exactly.

    python -m evaluation --url 127.0.0.1:8001 --in-process build/model_repository

``python -m evaluation.precision_check`` compares INT8 with FP32 in process on the same texts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ner_client.settings import (TRITON_PROTOCOL, TRITON_URL, Setting, SettingGroup, non_negative_int, positive_int,
                                 word_list)
from ner_model.data import DATA_DIR

BIO_FILE = Setting("file", None, "BIO file, char<TAB>tag per line", type=Path, shown="msra/test.bio of --data-dir")
REPOSITORY = Setting("repository", Path("build/model_repository"), "model repository (as the exporter wrote it)",
                     type=Path, env="NER_MODEL_REPOSITORY")

SETTINGS = SettingGroup("NER_EVAL_", (
    BIO_FILE,
    DATA_DIR,
    TRITON_URL,
    TRITON_PROTOCOL,
    Setting("models", ("ner", "ner_fp32"), "ensembles to score", type=word_list),
    Setting("limit", 0, "score only this many sentences (0: all)", type=non_negative_int),
    Setting("offset", 0, "skip this many sentences first", type=non_negative_int),
    Setting("batch_size", 16, "texts per request", type=positive_int),
    Setting("in_process", None, "model repository to also run in process, FP32", type=Path),
    Setting("output", Path("build/evaluation/report.json"), "JSON report", type=Path),
), "evaluation")

PRECISION_CHECK_SETTINGS = SettingGroup("NER_EVAL_", (
    REPOSITORY,
    BIO_FILE,
    DATA_DIR,
    Setting("output", Path("build/evaluation/precision_check.json"), "JSON report", type=Path,
            env="NER_EVAL_PRECISION_OUTPUT"),
), "INT8 against FP32")


def bio_file(args) -> Path:
    from ner_model.data import msra_file

    return args.file or msra_file("test", args.data_dir)


def main(argv=None) -> int:
    from ner_client import NerError

    from .served import evaluate, print_report, write_report

    args = SETTINGS.parse(argv, prog="python -m evaluation", description=__doc__)
    try:
        report = evaluate(bio_file(args), args.models, url=args.url, protocol=args.protocol, limit=args.limit,
                          offset=args.offset, batch_size=args.batch_size, in_process=args.in_process)
    except NerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    write_report(report, args.output)
    print_report(report)
    print(f"wrote {args.output}")
    return 0


def precision_check_main(argv=None) -> int:
    from .precision_check import precision_check
    from .served import write_report

    args = PRECISION_CHECK_SETTINGS.parse(argv, prog="python -m evaluation.precision_check", description=__doc__)
    report = precision_check(args.repository, bio_file(args))
    write_report(report, args.output)
    return 0
