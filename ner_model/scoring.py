"""Entity-level precision, recall and F1 (exact type and boundaries), overall (micro) and per type: the one score of
the project, for training's dev scoring and for ``python -m evaluation``, computed by seqeval in its strict IOB2 mode.

Callers hold entities as sets of (sentence, type, start, end), which also tell which entities differ; ``score`` turns
them into IOB2 tag sequences for seqeval (entities of one sentence never overlap: the decoder and the corpus chunk
strictly).
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


def _tag_sequences(gold: set[Span], predicted: set[Span]) -> tuple[list[list[str]], list[list[str]]]:
    sentences = sorted({s[0] for s in gold | predicted})
    by_sentence: dict[int, tuple[list, list]] = {i: ([], []) for i in sentences}
    for side, spans in enumerate((gold, predicted)):
        for sentence, entity_type, start, end in spans:
            by_sentence[sentence][side].append((entity_type, start, end))
    gold_tags, predicted_tags = [], []
    for i in sentences:
        gold_spans, predicted_spans = by_sentence[i]
        length = max(end for _, _, end in gold_spans + predicted_spans)
        gold_tags.append(tags_from_spans(length, gold_spans))
        predicted_tags.append(tags_from_spans(length, predicted_spans))
    return gold_tags, predicted_tags


def score(gold: set[Span], predicted: set[Span]) -> dict:
    """{"overall": {...}, "per_type": {type: {...}}} with precision, recall, f1, support, predicted."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    predicted_count = Counter(s[1] for s in predicted)

    def figures(row: dict, predicted_entities: int) -> dict:
        return {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"],
                "support": int(row["support"]), "predicted": predicted_entities}

    if not gold and not predicted:
        empty = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0}
        return {"overall": empty, "per_type": {}}
    gold_tags, predicted_tags = _tag_sequences(gold, predicted)
    report = classification_report(gold_tags, predicted_tags, mode="strict", scheme=IOB2, output_dict=True,
                                   zero_division=0)
    types = sorted({s[1] for s in gold | predicted})
    return {
        "overall": figures(report["micro avg"], len(predicted)),
        "per_type": {t: figures(report[t], predicted_count[t]) for t in types},
    }


def score_tags(gold_tags: list[list[str]], predicted_tags: list[list[str]]) -> dict:
    """``score`` of sentences given as IOB2 tags, both read strictly."""
    gold, predicted = set(), set()
    for i, (g, p) in enumerate(zip(gold_tags, predicted_tags, strict=True)):
        gold |= spans_from_tags(i, g)
        predicted |= spans_from_tags(i, p)
    return score(gold, predicted)
