"""The robustness benchmark's corpora (docs/robustness.md): MSRA sentences perturbed by ``ner_model.perturb``, each by
a generator of its own, and the check of a prediction against what was inserted.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from ner_model.perturb import Perturbed, Span, insert_pieces, join, mixed_piece, perturb, to_traditional

# Ends of a sentence, with their half-width forms (the width kind writes those), and line breaks: an entity holding
# one of these spans two sentences or lines.
SENTENCE_ENDS = frozenset("。！？｡!?\n\r\u2028\u2029\x0b\x0c\x85")


def stray(entity: tuple[int, int], perturbed: Perturbed) -> bool:
    """Whether a predicted entity [start, end) holds an inserted piece (in part), a sentence end or line break, or
    crosses the seam of two joined sentences."""
    start, end = entity
    return (any(a < end and start < b for a, b in perturbed.inserted)
            or any(c in SENTENCE_ENDS for c in perturbed.text[start:end])
            or any(start < q < end for q in perturbed.seams))


# ------------------------------------------------------------------------------------------------------ corpora

def sentence_rng(seed: int, kind: str, rate: float, index: int) -> random.Random:
    """The generator of one sentence of one corpus: the same seed gives the same corpus, whatever --limit cuts."""
    return random.Random(f"{seed}/{kind}/{rate!r}/{index}")


def corpus(sentences: Sequence[tuple[str, Sequence[Span]]], kind: str, rate: float, seed: int, join_size: int = 4,
           convert: Callable[[str], str] | None = None) -> list[Perturbed]:
    """A perturbed copy of ``sentences``: ``kind`` is an insertion kind, ``joined`` (``join_size`` consecutive
    sentences to one text, then mixed pieces at ``rate`` in its gaps, the seams included) or ``traditional``
    (``convert`` each sentence; ``rate`` unused)."""
    if kind == "traditional":
        return [to_traditional(text, spans, convert) for text, spans in sentences]
    if kind == "joined":
        texts = []
        for g, first in enumerate(range(0, len(sentences), join_size)):
            whole = join([Perturbed(text, tuple(spans)) for text, spans in sentences[first:first + join_size]])
            texts.append(insert_pieces(whole.text, whole.spans, sentence_rng(seed, kind, rate, g), rate, mixed_piece,
                                       whole.seams))
        return texts
    return [perturb(text, spans, kind, sentence_rng(seed, kind, rate, i), rate)
            for i, (text, spans) in enumerate(sentences)]

