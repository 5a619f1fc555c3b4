"""The benchmark's texts: sentences of the MSRA test set (``ner_model.data.msra_file("test")``), in file order, with
their gold entities for the accuracy check."""

from __future__ import annotations

from dataclasses import dataclass

from ner_model.data import msra_file, read_bio


@dataclass(frozen=True)
class Sentence:
    text: str
    entities: frozenset  # {(start, end, type)} in code points, end exclusive


def _spans(tags: list[str]) -> set[tuple[int, int, str]]:
    """Gold entities read strictly, as the project's evaluation does (``ner_model.scoring``)."""
    from ner_model.scoring import spans_from_tags

    return {(start, end, kind) for _, kind, start, end in spans_from_tags(0, tags)}


def msra_sentences(limit: int | None = None, skip_empty: bool = True) -> list[Sentence]:
    """The first ``limit`` sentences of MSRA test (all when None)."""
    sentences = [Sentence("".join(chars), frozenset(_spans(tags))) for chars, tags in read_bio(msra_file("test"))]
    if skip_empty:
        sentences = [s for s in sentences if s.text.strip()]
    return sentences[:limit] if limit is not None else sentences


def texts(limit: int) -> list[str]:
    return [s.text for s in msra_sentences(limit)]


def describe(values: list[str]) -> dict:
    lengths = sorted(len(t) for t in values)
    return {"count": len(values), "mean_chars": round(sum(lengths) / max(len(lengths), 1), 1),
            "median_chars": lengths[len(lengths) // 2] if lengths else 0, "max_chars": lengths[-1] if lengths else 0,
            "source": f"first {len(values)} sentences of {msra_file('test')}"}
