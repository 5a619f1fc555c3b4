"""Seeded perturbations of tagged sentences: foreign pieces in the gaps outside entities, width variants, Traditional
characters, joined sentences. Shared by training's noise augmentation (training/augment.py) and the robustness
benchmark (evaluation/perturb.py, docs/robustness.md).

Every function here is pure: a sentence (its text and gold spans, ``(type, start, end)`` in code points) and a
``random.Random`` in, a :class:`Perturbed` out, with the gold spans moved exactly and the inserted ranges recorded.

Insertion kinds put one foreign piece, with probability ``rate``, into each gap of the text that is not inside a gold
entity: the gaps are the positions 0..len(text) (both ends included), and a gap at an entity's first position or
right after its last one is outside it, so pieces do land next to names as they do in real text ("🎉欧阳娜娜"). A gold
span's text is the original entity's text afterwards. Two kinds change characters instead, one code point for one, so
offsets stay and only the span's text changes: ``width`` (besides its pieces) flips characters between their
full-width and half-width forms, inside entities too, and ``traditional`` converts the whole sentence.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from typing import Callable, Sequence

Span = tuple[str, int, int]  # (type, start, end exclusive), code points


@dataclass(frozen=True)
class Perturbed:
    text: str
    spans: tuple[Span, ...]
    inserted: tuple[tuple[int, int], ...] = ()  # [start, end) of every inserted piece, in ``text``
    seams: tuple[int, ...] = ()  # where one joined sentence ends and the next starts


# ------------------------------------------------------------------------------------------------------ pieces

_EMOJI = ("😀", "😂", "🤣", "😍", "🥰", "😭", "😅", "🙏", "👍", "👏", "🎉", "🔥", "💯", "✨", "🌟", "❤️", "😎", "🤔", "😱",
          "🙄", "💪", "🌈", "☀️", "🍜", "🧋", "🐱", "🚄", "✈️", "📷", "🏀", "⚽", "🎂", "💔", "🤝", "👀", "☕")
_TONED = ("👍", "👋", "🙏", "💪", "👏", "🙋", "🧑", "👩", "👨", "✌️", "🤞", "👌")
_TONES = tuple(chr(c) for c in range(0x1F3FB, 0x1F400))
_ZWJ = ("👨\u200d👩\u200d👧\u200d👦", "👩\u200d💻", "🧑\u200d🚀", "🏳️\u200d🌈", "👨\u200d🍳", "🐻\u200d❄️", "❤️\u200d🔥",
        "👩🏽\u200d🎓", "🧑🏻\u200d🤝\u200d🧑🏿", "😶\u200d🌫️", "👁️\u200d🗨️", "🏃\u200d♀️")
_FLAG_REGIONS = ("CN", "US", "JP", "KR", "FR", "DE", "GB", "HK", "TW", "SG", "RU", "IT", "BR", "IN", "CA", "AU")
_SUBDIVISION_FLAGS = ("🏴\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F",  # Scotland
                      "🏴\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F")  # England
_KEYCAPS = tuple(f"{c}\ufe0f\u20e3" for c in "0123456789#*")


def _flag(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(_SUBDIVISION_FLAGS)
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in rng.choice(_FLAG_REGIONS))


def _one_emoji(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(_EMOJI)
    if roll < 0.62:
        base = rng.choice(_TONED)
        return base.rstrip("\ufe0f") + rng.choice(_TONES)
    if roll < 0.8:
        return rng.choice(_ZWJ)
    if roll < 0.95:
        return _flag(rng)
    return rng.choice(_KEYCAPS)


def emoji_piece(rng: random.Random) -> str:
    """One emoji (plain, with a skin tone, a ZWJ sequence, a flag or a keycap), or a run of two or three."""
    return "".join(_one_emoji(rng) for _ in range(rng.choice((1, 1, 1, 2, 3))))


# (first, last) code points of blocks outside the bert-base-chinese vocabulary, with their weights. Not the CJK
# compatibility ideographs: BERT's normalizer decomposes them into unified ideographs, 39 % of them common ones
# (U+2F8xx to 港), which the model rightly reads as text.
_RARE_BLOCKS = (
    ((0x20000, 0x2A6DF), 5),  # CJK Extension B
    ((0x2A700, 0x2CEAF), 1),  # CJK Extensions C to F
    ((0x3400, 0x4DBF), 1),  # CJK Extension A
    ((0xA000, 0xA48C), 1),  # Yi syllables
    ((0x1D400, 0x1D433), 1),  # mathematical bold letters (the "fancy font" of nicknames)
)
# The six characters of those blocks that the vocabulary holds (all in Extension A).
_IN_VOCABULARY = frozenset(map(chr, (0x35CE, 0x3B0E, 0x45C9, 0x4CCD, 0x4D15, 0x4DAE)))


def _rare_char(rng: random.Random, first: int, last: int) -> str:
    while (char := chr(rng.randint(first, last))) in _IN_VOCABULARY:
        pass
    return char


def rare_piece(rng: random.Random) -> str:
    """One to three characters of one block outside the vocabulary (CJK Extension B most often)."""
    (first, last), = rng.choices([block for block, _ in _RARE_BLOCKS], [w for _, w in _RARE_BLOCKS])
    return "".join(_rare_char(rng, first, last) for _ in range(rng.choice((1, 1, 2, 3))))


_WORDS = ("ok", "OK", "lol", "hhh", "WiFi", "iPhone", "App", "vlog", "VIP", "PPT", "CEO", "bug", "yyds", "emmm", "Hello",
          "thx", "plz", "QAQ", "DIY", "PK", "live", "cool", "wow", "nice", "update", "Download", "KPI", "GDP", "USB")
_TLDS = ("com", "cn", "net", "org", "io", "com.cn", "me")
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = _LOWER + _LOWER.upper() + "0123456789"


def _letters(rng: random.Random, low: int, high: int, alphabet: str = _LOWER) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _word(rng: random.Random) -> str:
    return rng.choice(_WORDS) if rng.random() < 0.6 else _letters(rng, 2, 8)


def _url(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return f"t.cn/{_letters(rng, 6, 8, _ALNUM)}"
    scheme = rng.choice(("https://", "http://", "https://www.", "www."))
    path = "".join(f"/{_letters(rng, 2, 8, _ALNUM)}" for _ in range(rng.randint(0, 2)))
    query = f"?id={rng.randint(1, 99999)}" if rng.random() < 0.3 else ""
    return f"{scheme}{_letters(rng, 3, 10)}.{rng.choice(_TLDS)}{path}{query}"


def _handle(rng: random.Random) -> str:
    name = _letters(rng, 3, 10, _ALNUM + "_")
    return "@" + (name if name[0] != "_" else "x" + name)


def _hashtag(rng: random.Random) -> str:
    tag = _word(rng)
    return "#" + tag + ("#" if rng.random() < 0.2 else "")


def _digits(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.35:
        return str(rng.randint(0, 10 ** rng.randint(1, 6)))
    if roll < 0.5:
        return f"{rng.randint(0, 999)}.{rng.randint(0, 99)}"
    if roll < 0.65:
        return f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if roll < 0.8:
        return f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}"
    if roll < 0.9:
        return f"{rng.randint(1, 100)}%"
    return f"+86 1{rng.randint(3, 9)}{rng.randint(0, 999999999):09d}"


def latin_piece(rng: random.Random) -> str:
    """A Latin word, a URL, an @handle, a hashtag or a number (dates, times, percentages, phone numbers)."""
    return rng.choice((_word, _word, _url, _handle, _hashtag, _digits))(rng)


_FULL_WIDTH_OFFSET = 0xFEE0  # U+FF01..U+FF5E are U+0021..U+007E shifted by this
_WIDTH_PAIRS = {"\u3000": " ", "。": "｡", "「": "｢", "」": "｣", "、": "､", "・": "･"}
_TO_OTHER_WIDTH = {**_WIDTH_PAIRS, **{half: full for full, half in _WIDTH_PAIRS.items()},
                   **{chr(c): chr(c + _FULL_WIDTH_OFFSET) for c in range(0x21, 0x7F)},
                   **{chr(c + _FULL_WIDTH_OFFSET): chr(c) for c in range(0x21, 0x7F)}}
_HALF_WIDTH_KATAKANA = ("ｶﾜｲｲ", "ﾔﾊﾞｲ", "ｽｺﾞｲ", "ｱﾘｶﾞﾄｳ", "ｵﾂｶﾚ", "ﾅﾙﾎﾄﾞ", "ｷﾀ━(ﾟ∀ﾟ)━!")


def other_width(char: str) -> str:
    """The full-width form of a half-width character and the other way round; other characters unchanged."""
    return _TO_OTHER_WIDTH.get(char, char)


def width_piece(rng: random.Random) -> str:
    """A Latin word or number in full-width letters (ＯＫ, ２０２４), or half-width katakana (ｶﾜｲｲ)."""
    if rng.random() < 0.2:
        return rng.choice(_HALF_WIDTH_KATAKANA)
    plain = rng.choice((_word, _word, _digits, _handle))(rng)
    return "".join(chr(ord(c) + _FULL_WIDTH_OFFSET) if "!" <= c <= "~" else "\u3000" if c == " " else c
                   for c in plain)


_SPACES = (" ", " ", "  ", "   ", "\t", "\n", "\n", "\n\n", "\r\n", "\u3000", "\u00a0", " \n", "\n ")


def space_piece(rng: random.Random) -> str:
    """Spaces, tabs, line breaks (\\n, \\r\\n, blank lines), an ideographic or a no-break space."""
    return rng.choice(_SPACES)


PIECES: dict[str, Callable[[random.Random], str]] = {
    "emoji": emoji_piece, "rare": rare_piece, "latin": latin_piece, "width": width_piece, "space": space_piece,
}


def mixed_piece(rng: random.Random) -> str:
    """A piece of any insertion kind, each equally likely."""
    return rng.choice(tuple(PIECES.values()))(rng)


# ------------------------------------------------------------------------------------------------------ insertion

def _is_cjk(char: str) -> bool:
    """The ideograph ranges the BERT tokenizer splits into words of one character."""
    c = ord(char)
    return (0x4E00 <= c <= 0x9FFF or 0x3400 <= c <= 0x4DBF or 0x20000 <= c <= 0x2A6DF or 0x2A700 <= c <= 0x2CEAF
            or 0xF900 <= c <= 0xFAFF or 0x2F800 <= c <= 0x2FA1F)


def _glues(char: str) -> bool:
    """Whether the tokenizer would run this character into a word with a like neighbour (letters, digits, emoji,
    symbols: neither space, punctuation nor an ideograph)."""
    if char.isspace() or _is_cjk(char):
        return False
    c = ord(char)
    ascii_punctuation = 33 <= c <= 47 or 58 <= c <= 64 or 91 <= c <= 96 or 123 <= c <= 126
    return not ascii_punctuation and not unicodedata.category(char).startswith("P")


def gaps(length: int, spans: Sequence[Span]) -> list[int]:
    """Positions 0..length where a piece may go: every one not strictly inside a gold entity."""
    inside = {p for _, start, end in spans for p in range(start + 1, end)}
    return [p for p in range(length + 1) if p not in inside]


def insert_pieces(text: str, spans: Sequence[Span], rng: random.Random, rate: float,
                  piece: Callable[[random.Random], str], seams: Sequence[int] = (),
                  forced: Sequence[int] = ()) -> Perturbed:
    """``text`` with a piece in each free gap with probability ``rate``, and in each gap of ``forced`` always. A piece
    that would run into one word with its neighbour (a Latin word after a digit, an emoji after a letter) is set off
    by a space, as people type it, so that the tokenizer can still tell it from its neighbour; that space counts as
    part of the inserted range. A seam stays before a piece inserted at it."""
    chosen = {}
    for p in gaps(len(text), spans):
        if rng.random() < rate:
            chosen[p] = piece(rng)
    for p in forced:
        if p not in chosen:
            chosen[p] = piece(rng)
    out, inserted, shift_at, before_at = [], [], {}, {}
    length = 0
    for p in range(len(text) + 1):
        before_at[p] = length - p
        if p in chosen:
            item = chosen[p]
            if p > 0 and _glues(text[p - 1]) and _glues(item[0]):
                item = " " + item
            if p < len(text) and _glues(text[p]) and _glues(item[-1]):
                item = item + " "
            inserted.append((length, length + len(item)))
            out.append(item)
            length += len(item)
        shift_at[p] = length - p
        if p < len(text):
            out.append(text[p])
            length += 1
    moved = tuple((t, start + shift_at[start], end + shift_at[start]) for t, start, end in spans)
    return Perturbed("".join(out), moved, tuple(inserted), tuple(q + before_at[q] for q in seams))


def convert_widths(text: str, rng: random.Random, rate: float) -> str:
    """Each character that has a full-width or half-width counterpart becomes it with probability ``rate``."""
    return "".join(other_width(c) if c in _TO_OTHER_WIDTH and rng.random() < rate else c for c in text)


def perturb(text: str, spans: Sequence[Span], kind: str, rng: random.Random, rate: float,
            forced: Sequence[int] = ()) -> Perturbed:
    """One sentence under an insertion kind (``emoji``, ``rare``, ``latin``, ``width``, ``space``, ``mixed``). The
    width kind first flips characters' widths at ``rate``, then inserts its pieces (in the gaps of ``forced``
    always)."""
    if kind == "width":
        text = convert_widths(text, rng, rate)
    return insert_pieces(text, spans, rng, rate, mixed_piece if kind == "mixed" else PIECES[kind], forced=forced)


def to_traditional(text: str, spans: Sequence[Span], convert: Callable[[str], str]) -> Perturbed:
    """The sentence in Traditional characters by ``convert`` (OpenCC s2t). OpenCC converts phrase by phrase; where
    that changes the length (no MSRA sentence does), each character is converted alone, so offsets always hold."""
    converted = convert(text)
    if len(converted) != len(text):
        converted = "".join(c if len(t := convert(c)) != 1 else t for c in text)
    return Perturbed(converted, tuple(spans))


def join(parts: Sequence[Perturbed]) -> Perturbed:
    """Sentences concatenated into one text as they stand, their spans and inserted ranges moved, the seams kept."""
    text, spans, inserted, seams, offset = [], [], [], [], 0
    for k, part in enumerate(parts):
        if k:
            seams.append(offset)
        text.append(part.text)
        spans.extend((t, s + offset, e + offset) for t, s, e in part.spans)
        inserted.extend((s + offset, e + offset) for s, e in part.inserted)
        seams.extend(q + offset for q in part.seams)
        offset += len(part.text)
    return Perturbed("".join(text), tuple(spans), tuple(inserted), tuple(sorted(seams)))
