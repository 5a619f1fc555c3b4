"""python -m evaluation — score a BIO file through a running Triton server, via the client SDK.

Entity-level precision, recall and F1 (exact type and boundaries), overall and per type, for each ensemble
(`ner` = INT8 and `ner_fp32` by default), written as JSON and printed as a table. With --in-process REPOSITORY,
the same texts also go through that repository's FP32 ONNX file and decoder code in process, and the report says
whether the served FP32 F1 equals it exactly. Every flag has an environment variable.

    .venv/bin/python -m evaluation --url 127.0.0.1:8001 --in-process build/model_repository
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from export.paths import msra_file
from ner_client import NerClient, NerError
from training.data import read_bio

from .scoring import score, spans_from_tags, table


def load_bio(path: Path, limit: int | None, offset: int = 0) -> tuple[list[str], set]:
    sentences = read_bio(path)[offset:]
    if limit:
        sentences = sentences[:limit]
    texts = ["".join(chars) for chars, _ in sentences]
    gold = set().union(*(spans_from_tags(i, tags) for i, (_, tags) in enumerate(sentences))) if sentences else set()
    return texts, gold


def predicted_spans(entities_per_text) -> set:
    return {(i, e["type"], e["start"], e["end"]) for i, entities in enumerate(entities_per_text) for e in entities}


def served_entities(url: str, protocol: str, model: str, texts: list[str], batch_size: int) -> list[list[dict]]:
    with NerClient(url, protocol, model, timeout=120) as client, \
            tqdm(total=len(texts), desc=f"{model} via {protocol}", unit="text", file=sys.stderr) as bar:
        results = client.extract_many(texts, batch_size=batch_size, progress=bar.update)
    return [[e.to_dict() for e in entities] for entities in results]


def evaluate(args) -> dict:
    texts, gold = load_bio(args.file, args.limit, args.offset)
    report = {"file": str(args.file), "offset": args.offset, "sentences": len(texts), "gold_entities": len(gold),
              "url": args.url, "protocol": args.protocol, "models": {}}
    for model in args.models:
        started = time.perf_counter()
        entities = served_entities(args.url, args.protocol, model, texts, args.batch_size)
        report["models"][model] = {**score(gold, predicted_spans(entities)),
                                   "seconds": round(time.perf_counter() - started, 1)}
    if args.in_process:
        from .in_process import InProcessPipeline

        pipeline = InProcessPipeline(args.in_process, "fp32")
        entities = [pipeline([t])[0] for t in tqdm(texts, desc="in-process FP32", unit="text", file=sys.stderr)]
        in_process = score(gold, predicted_spans(entities))
        report["in_process_fp32"] = in_process
        if "ner_fp32" in report["models"]:
            report["served_fp32_equals_in_process"] = report["models"]["ner_fp32"]["overall"] == in_process["overall"]
    return report


def main(argv=None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=Path(env("NER_EVAL_FILE", str(msra_file("test")))),
                        help="BIO file, char<TAB>tag per line [NER_EVAL_FILE]; default MSRA test")
    parser.add_argument("--url", default=env("NER_URL", "127.0.0.1:8001"), help="[NER_URL]")
    parser.add_argument("--protocol", default=env("NER_PROTOCOL", "grpc"), choices=["grpc", "http"], help="[NER_PROTOCOL]")
    parser.add_argument("--models", nargs="+", default=env("NER_EVAL_MODELS", "ner ner_fp32").split(),
                        help="ensembles to score [NER_EVAL_MODELS]")
    parser.add_argument("--limit", type=int, default=int(env("NER_EVAL_LIMIT", "0")) or None,
                        help="score only this many sentences [NER_EVAL_LIMIT]")
    parser.add_argument("--offset", type=int, default=int(env("NER_EVAL_OFFSET", "0")),
                        help="skip this many sentences first [NER_EVAL_OFFSET]")
    parser.add_argument("--batch-size", type=int, default=int(env("NER_EVAL_BATCH_SIZE", "16")),
                        help="texts per request [NER_EVAL_BATCH_SIZE]")
    parser.add_argument("--in-process", type=Path, default=env("NER_EVAL_IN_PROCESS"),
                        help="model repository to also run in process, FP32 [NER_EVAL_IN_PROCESS]")
    parser.add_argument("--output", type=Path, default=Path(env("NER_EVAL_OUTPUT", "build/evaluation/report.json")),
                        help="JSON report [NER_EVAL_OUTPUT]")
    args = parser.parse_args(argv)
    try:
        report = evaluate(args)
    except NerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    for model, scores in report["models"].items():
        print(table(scores, f"{model} ({report['sentences']} sentences of {args.file.name})"), end="\n\n")
    if "in_process_fp32" in report:
        print(table(report["in_process_fp32"], "in-process FP32"), end="\n\n")
        print(f"served FP32 F1 equals in-process FP32 F1: {report.get('served_fp32_equals_in_process')}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
