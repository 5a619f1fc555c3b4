"""Entity-level precision, recall and F1 (exact type and boundaries), overall (micro) and per type: the one score of
the project, for training's dev scoring and for ``python -m evaluation``.

The arithmetic is plain counting over sets of (sentence, type, start, end), which also tells which entities differ;
tests/test_scoring.py checks it against seqeval's strict IOB2 mode on the same predictions and against a
hand-computed fixture.
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


def score_tags(gold_tags: list[list[str]], predicted_tags: list[list[str]]) -> dict:
    """``score`` of sentences given as IOB2 tags, both read strictly."""
    gold, predicted = set(), set()
    for i, (g, p) in enumerate(zip(gold_tags, predicted_tags, strict=True)):
        gold |= spans_from_tags(i, g)
        predicted |= spans_from_tags(i, p)
    return score(gold, predicted)
