"""Tag schemes: read BIO, BIOES (also written IOBES or BILOU) and BMES from label names, and chunk tags into spans.

Chunking is strict, as seqeval's strict mode: a span must open with B (or be a single S) and close properly;
a stray I/M/E that does not continue an open span of the same type is dropped rather than guessed into an entity.
"""

from __future__ import annotations

from dataclasses import dataclass

# Prefix spellings folded into one alphabet: B(egin), I(nside), E(nd), S(ingle), O(utside).
_PREFIX_ALIASES = {"B": "B", "I": "I", "M": "I", "E": "E", "L": "E", "S": "S", "U": "S"}


@dataclass(frozen=True)
class Tag:
    prefix: str  # one of B, I, E, S, O
    type: str  # entity type, "" for O

    @property
    def continues(self) -> bool:
        """True when this tag continues a span that a previous tag opened."""
        return self.prefix in ("I", "E")


OUTSIDE = Tag("O", "")


def _split_label(label: str) -> tuple[str, str]:
    """(raw prefix letter, type) of "B-PER", "B_PER" or "PER-B"; ("O", "") for O."""
    if label.upper() == "O":
        return "O", ""
    for sep in ("-", "_"):
        head, found, tail = label.partition(sep)
        if found and head.upper() in _PREFIX_ALIASES and tail:
            return head.upper(), tail
        head, found, tail = label.rpartition(sep)
        if found and tail.upper() in _PREFIX_ALIASES and head:
            return tail.upper(), head
    raise ValueError(f"label {label!r} is not O nor <prefix>-<TYPE> with a prefix among B, I, M, E, S, L, U")


def parse_label(label: str) -> Tag:
    prefix, entity_type = _split_label(label)
    return OUTSIDE if prefix == "O" else Tag(_PREFIX_ALIASES[prefix], entity_type)


def detect_scheme(labels: list[str]) -> str:
    """Names the scheme the label set is written in: "BIO", "BIOES" or "BMES"."""
    prefixes = {_split_label(label)[0] for label in labels}
    if "M" in prefixes and "I" not in prefixes:
        return "BMES"
    if prefixes & {"E", "S", "L", "U"}:
        return "BIOES"
    return "BIO"


def _respelled(label: str, prefix: str) -> str:
    """``label`` with another prefix letter, in the label's own spelling ("I-PER" -> "B-PER", "PER_M" -> "PER_B")."""
    raw, entity_type = _split_label(label)
    if label[:1].upper() == raw and label[1:2] in ("-", "_") and label[2:] == entity_type:
        return prefix + label[1:]
    return label[:-1] + prefix


def unmatched_tags(labels: list[str]) -> list[tuple[str, str]]:
    """(label, the label it needs) for every tag the strict chunker could never make part of an entity: an I/M/E of
    a type without its B (nothing opens the span), and in BIOES/BMES a B of a type without its E (nothing closes a
    span of two or more words). A typo such as I-PRODUCTS beside B-PRODUCT is the usual cause."""
    prefixes: dict[str, set[str]] = {}
    for label in labels:
        tag = parse_label(label)
        if tag is not OUTSIDE:
            prefixes.setdefault(tag.type, set()).add(tag.prefix)
    closing = detect_scheme(labels) != "BIO"
    end_letter = "L" if any(_split_label(label)[0] == "L" for label in labels) else "E"  # BILOU spells E as L
    unmatched = []
    for label in labels:
        tag = parse_label(label)
        if tag.continues and "B" not in prefixes[tag.type]:
            unmatched.append((label, _respelled(label, "B")))
        elif tag.prefix == "B" and closing and "E" not in prefixes[tag.type]:
            unmatched.append((label, _respelled(label, end_letter)))
    return unmatched


SCHEME_PREFIXES = {"BIO": "BI", "BIOES": "BIES", "BMES": "BMES"}


def scheme_labels(scheme: str, types) -> list[str]:
    """A scheme's label set: O, then each type's prefixes in the scheme's order (B-PER, I-PER, ..., B-LOC, ...)."""
    if scheme not in SCHEME_PREFIXES:
        raise ValueError(f"unknown tag scheme {scheme!r}; one of {', '.join(SCHEME_PREFIXES)}")
    return ["O"] + [f"{prefix}-{kind}" for kind in types for prefix in SCHEME_PREFIXES[scheme]]


def entity_types(labels: list[str]) -> list[str]:
    return sorted({tag.type for tag in map(parse_label, labels) if tag is not OUTSIDE})


def chunk(tags: list[Tag], scheme: str) -> list[tuple[str, int, int]]:
    """Spans as (type, first index, last index inclusive)."""
    spans: list[tuple[str, int, int]] = []
    open_type, open_at = None, -1
    closing_needed = scheme != "BIO"  # BIOES and BMES close a multi-token span with E
    for i, tag in enumerate(tags):
        if tag.prefix == "S":
            open_type = None
            spans.append((tag.type, i, i))
        elif tag.prefix == "B":
            if open_type is not None and not closing_needed:
                spans.append((open_type, open_at, i - 1))
            open_type, open_at = tag.type, i
        elif tag.prefix == "I" and open_type == tag.type:
            continue
        elif tag.prefix == "E" and open_type == tag.type:
            spans.append((open_type, open_at, i))
            open_type = None
        else:  # O, or a stray I/E
            if open_type is not None and not closing_needed:
                spans.append((open_type, open_at, i - 1))
            open_type = None
    if open_type is not None and not closing_needed:
        spans.append((open_type, open_at, len(tags) - 1))
    return spans
