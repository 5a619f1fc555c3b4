"""An outside word lexicon for the default model: jieba's dictionary (PyPI ``jieba==0.42.1``, MIT), its words with
their part of speech, turned into the hash tables of ``ner_model.lexicon.LexiconMatcher``.

42 % of dev entities never occur in MSRA train; a dictionary built from a large corpus knows many of them as words,
and its part-of-speech tags name people (``nr``, ``nrt``, ``nrfg``), places (``ns``) and organisations (``nt``).
Every other word counts as a plain ``WORD`` (a segmentation hint). A word is kept when each of its characters is one
bert-base-chinese token (so it can match the serving tokenizer's ids) and it has 2..``max_len`` of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ner_model.lexicon import LEXICON_TYPES, ngram_hashes

POS_TO_TYPE = {"nr": "PER", "nrt": "PER", "nrfg": "PER", "ns": "LOC", "nt": "ORG"}


def jieba_dictionary() -> Path:
    """``dict.txt`` of the installed ``jieba`` package (read as a file; jieba itself is never imported)."""
    from importlib.util import find_spec

    spec = find_spec("jieba")
    if spec is None or not spec.origin:
        raise SystemExit("--lexicon jieba needs the jieba package: pip install -r requirements/train.txt")
    return Path(spec.origin).parent / "dict.txt"


def read_dictionary(path) -> dict[str, int]:
    """word → type code (bit k set: the dictionary lists the word as ``LEXICON_TYPES[k]``)."""
    codes: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            word, pos = parts[0], parts[2]
            kind = POS_TO_TYPE.get(pos, "WORD")
            codes[word] = codes.get(word, 0) | (1 << LEXICON_TYPES.index(kind))
    return codes


def word_ids(tokenizer, words: list[str], max_len: int) -> list[list[int] | None]:
    """Token ids of each word when every character is exactly one known token and 2..max_len long, else None."""
    enc = tokenizer(words, add_special_tokens=False)["input_ids"]
    out = []
    for word, ids in zip(words, enc):
        ok = len(ids) == len(word) and 2 <= len(ids) <= max_len and tokenizer.unk_token_id not in ids
        out.append(ids if ok else None)
    return out


@dataclass
class LexiconTables:
    fingerprints: np.ndarray  # int32 [buckets], -1 where empty
    codes: np.ndarray  # uint8 [buckets]
    words: int  # placed
    dropped: int  # no free bucket after the cuckoo walk

    def load_into(self, matcher) -> None:
        """Copy the tables into a ``LexiconMatcher``'s buffers (same number of buckets)."""
        with torch.no_grad():
            matcher.fingerprints.copy_(torch.from_numpy(self.fingerprints))
            matcher.codes.copy_(torch.from_numpy(self.codes))


def build_tables(entries: list[tuple[list[int], int]], buckets: int, max_kicks: int = 500) -> LexiconTables:
    """Cuckoo placement: each word in one of its two candidate buckets, so a lookup reads two buckets at most."""
    fingerprints = np.full(buckets, -1, dtype=np.int64)
    codes = np.zeros(buckets, dtype=np.uint8)
    keys: dict[int, tuple[int, int, int]] = {}  # bucket → (other bucket, fingerprint, code) of the word there
    merged: dict[tuple[int, int, int], int] = {}
    for ids, code in entries:
        h = ngram_hashes(ids)
        merged[h] = merged.get(h, 0) | code
    placed = dropped = 0
    for (h1, h2, h3), code in merged.items():
        item = (h1 % buckets, h2 % buckets, h3, code)
        for _ in range(max_kicks):
            a, b, fp, c = item
            slot = a if a not in keys else (b if b not in keys else None)
            if slot is not None:
                keys[slot] = (a if slot == b else b, fp, c)
                fingerprints[slot], codes[slot] = fp, c
                placed += 1
                item = None
                break
            # evict the word in bucket a; it moves to its other bucket next
            other, fp_old, c_old = keys[a]
            keys[a] = (b, fp, c)
            fingerprints[a], codes[a] = fp, c
            item = (other, a, fp_old, c_old)
        if item is not None:
            dropped += 1
    return LexiconTables(fingerprints.astype(np.int32), codes, placed, dropped)


def jieba_tables(tokenizer, buckets: int, max_len: int, path=None) -> LexiconTables:
    codes = read_dictionary(path or jieba_dictionary())
    words = list(codes)
    entries = [(ids, codes[w]) for w, ids in zip(words, word_ids(tokenizer, words, max_len)) if ids is not None]
    return build_tables(entries, buckets)
