"""Entity-level precision, recall and F1 (exact type and boundaries), overall (micro) and per type.

The arithmetic is plain counting over sets of (sentence, type, start, end); a test checks it against seqeval's
strict IOB2 mode on the same predictions and against a hand-computed fixture.
"""

from __future__ import annotations

from collections import Counter

from ner_pipeline.tagging import chunk, parse_label

Span = tuple[int, str, int, int]  # (sentence index, type, start, end exclusive)


def spans_from_tags(sentence: int, tags: list[str]) -> set[Span]:
    """Gold spans of one sentence's IOB2 tags, read strictly (a stray I- opens nothing)."""
    return {(sentence, t, first, last + 1) for t, first, last in chunk([parse_label(tag) for tag in tags], "BIO")}


def tags_from_spans(length: int, spans: list[tuple[str, int, int]]) -> list[str]:
    """IOB2 tags of a sentence of ``length`` characters from (type, start, end) spans."""
    tags = ["O"] * length
    for entity_type, start, end in spans:
        tags[start] = f"B-{entity_type}"
        for i in range(start + 1, end):
            tags[i] = f"I-{entity_type}"
    return tags


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn, "predicted": tp + fp}


def score(gold: set[Span], predicted: set[Span]) -> dict:
    """{"overall": {...}, "per_type": {type: {...}}} with precision, recall, f1, support, predicted."""
    tp = Counter(s[1] for s in gold & predicted)
    fp = Counter(s[1] for s in predicted - gold)
    fn = Counter(s[1] for s in gold - predicted)
    types = sorted(set(tp) | set(fp) | set(fn))
    return {
        "overall": _prf(sum(tp.values()), sum(fp.values()), sum(fn.values())),
        "per_type": {t: _prf(tp[t], fp[t], fn[t]) for t in types},
    }


def table(scores: dict, title: str) -> str:
    lines = [f"{title}", f"{'type':<8}{'P':>8}{'R':>8}{'F1':>8}{'support':>9}"]
    rows = list(scores["per_type"].items()) + [("overall", scores["overall"])]
    for name, s in rows:
        lines.append(f"{name:<8}{100 * s['precision']:8.2f}{100 * s['recall']:8.2f}{100 * s['f1']:8.2f}{s['support']:9d}")
    return "\n".join(lines)
