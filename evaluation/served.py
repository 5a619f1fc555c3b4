"""Scoring a BIO file through a running Triton server, via the client SDK, and (optionally) the same texts through
the model repository's own files in process, entity set against entity set."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ner_model.data import read_bio
from ner_model.scoring import score, spans_from_tags


def load_bio(path: Path, limit: int | None = None, offset: int = 0) -> tuple[list[str], set]:
    """The texts of a BIO file (from sentence ``offset``, at most ``limit`` of them) and their gold spans."""
    sentences = read_bio(path)[offset:]
    if limit:
        sentences = sentences[:limit]
    texts = ["".join(chars) for chars, _ in sentences]
    gold = set().union(*(spans_from_tags(i, tags) for i, (_, tags) in enumerate(sentences))) if sentences else set()
    return texts, gold


def predicted_spans(entities_per_text) -> set:
    return {(i, e["type"], e["start"], e["end"]) for i, entities in enumerate(entities_per_text) for e in entities}


def served_entities(url: str | None, protocol: str | None, model: str, texts: list[str],
                    batch_size: int) -> list[list[dict]]:
    from ner_client import NerClient
    from tqdm import tqdm

    with NerClient(url, protocol, model, timeout=120) as client, \
            tqdm(total=len(texts), desc=f"{model} via {client.protocol}", unit="text", file=sys.stderr) as bar:
        results = client.extract_many(texts, batch_size=batch_size, progress=bar.update)
    return [[e.to_dict() for e in entities] for entities in results]


def compare(served: set, in_process: set) -> dict:
    """Whether two runs found the same entities: equal only when their entity sets are equal."""
    differing = served ^ in_process
    return {"equal": not differing, "differing_entities": len(differing),
            "only_served": len(served - in_process), "only_in_process": len(in_process - served)}


def evaluate(path: Path, models, url: str | None = None, protocol: str | None = None, limit: int | None = None,
             offset: int = 0, batch_size: int = 16, in_process: Path | None = None) -> dict:
    texts, gold = load_bio(path, limit, offset)
    report = {"file": str(path), "offset": offset, "sentences": len(texts), "gold_entities": len(gold),
              "url": url, "protocol": protocol, "models": {}}
    predicted = {}
    for model in models:
        started = time.perf_counter()
        predicted[model] = predicted_spans(served_entities(url, protocol, model, texts, batch_size))
        report["models"][model] = {**score(gold, predicted[model]),
                                   "seconds": round(time.perf_counter() - started, 1)}
    if in_process:
        from tqdm import tqdm

        from .in_process import InProcessPipeline

        pipeline = InProcessPipeline(in_process, "fp32")
        entities = [pipeline([t])[0] for t in tqdm(texts, desc="in-process FP32", unit="text", file=sys.stderr)]
        in_process_spans = predicted_spans(entities)
        report["in_process_fp32"] = score(gold, in_process_spans)
        if "ner_fp32" in predicted:
            comparison = compare(predicted["ner_fp32"], in_process_spans)
            report["served_fp32_equals_in_process"] = comparison["equal"]
            report["served_fp32_against_in_process"] = comparison
    return report


def table(scores: dict, title: str) -> str:
    lines = [f"{title}", f"{'type':<8}{'P':>8}{'R':>8}{'F1':>8}{'support':>9}"]
    rows = list(scores["per_type"].items()) + [("overall", scores["overall"])]
    for name, s in rows:
        lines.append(f"{name:<8}{100 * s['precision']:8.2f}{100 * s['recall']:8.2f}{100 * s['f1']:8.2f}{s['support']:9d}")
    return "\n".join(lines)


def print_report(report: dict) -> None:
    for model, scores in report["models"].items():
        print(table(scores, f"{model} ({report['sentences']} sentences of {Path(report['file']).name})"), end="\n\n")
    if "in_process_fp32" in report:
        print(table(report["in_process_fp32"], "in-process FP32"), end="\n\n")
    if "served_fp32_against_in_process" in report:
        differing = report["served_fp32_against_in_process"]["differing_entities"]
        print(f"served FP32 entities equal in-process FP32 entities: {report['served_fp32_equals_in_process']} "
              f"({differing} differing)")


def write_report(report: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, ensure_ascii=False))
