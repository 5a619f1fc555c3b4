"""Training-time augmentation. Mention replacement: an entity of a chunk is swapped for another training entity of the
same type. Token dropout (``mask_tokens``): a few characters of each batch are hidden as ``[UNK]``. Noise
(:class:`NoiseAugmenter`): a share of each batch's chunks (or of all the chunks once an epoch, before they are cut into
batches: ``--noise-per-epoch``) is perturbed as web text is, and tokenised again.

Why mention replacement and token dropout: 42 % of the dev entities never occur in train, and the fine-tuned tagger
recalls 74.7 % of those against 90.8 % of the seen ones (docs/experiments.md): it memorises entity strings. Swapping
mentions keeps every context and label sequence but breaks the link between a context and one string, so the context
has to carry the decision. Only mentions whose words are each exactly one token (every CJK character is) are swapped
or used as replacements, so a swap is a plain substitution of token ids and labels, with no re-tokenisation.

Why noise: MSRA is clean news text, and foreign pieces next to a name (emoji, characters outside the vocabulary,
Latin words and URLs, width variants) cost the model 5 to 11 F1 at 5 % of gaps, mostly because entities stretch over
them (docs/robustness.md). The pieces are those of the robustness benchmark (``ner_model.perturb``), drawn here from
the training run's own seed; the benchmark scores dev and test, never training text.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Callable, Sequence

import numpy as np
import torch

from ner_model.perturb import PIECES, Perturbed, Span, insert_pieces, join, mixed_piece, perturb, to_traditional

from .data import CLS_ID, LABELS, SEP_ID, UNK_ID, Chunk, chunks_in_scheme, encode_sentences, make_chunks

_B = {LABELS.index(f"B-{t}"): t for t in ("PER", "LOC", "ORG")}
_I = {t: LABELS.index(f"I-{t}") for t in ("PER", "LOC", "ORG")}


def _one_token_words(chunk: Chunk) -> np.ndarray:
    """For each word: does it span exactly one token (its next word, or [SEP], starts right after it)?"""
    pos = chunk.word_pos
    following = np.append(pos[1:], len(chunk.input_ids) - 1)
    return following == pos + 1


def mentions(chunk: Chunk) -> list[tuple[str, int, int]]:
    """(type, first word, one past the last word) of every entity whose words are one token each."""
    labels, single = chunk.labels, _one_token_words(chunk)
    found, w = [], 0
    while w < len(labels):
        entity_type = _B.get(int(labels[w]))
        if entity_type is None:
            w += 1
            continue
        end = w + 1
        while end < len(labels) and labels[end] == _I[entity_type]:
            end += 1
        if single[w:end].all():
            found.append((entity_type, w, end))
        w = end
    return found


def mention_pool(chunks: list[Chunk]) -> dict[str, list[tuple[int, ...]]]:
    """Every distinct one-token-per-word mention of the training chunks, by type, as token ids."""
    pool: dict[str, set[tuple[int, ...]]] = {t: set() for t in _I}
    for chunk in chunks:
        for entity_type, a, b in mentions(chunk):
            pool[entity_type].add(tuple(int(chunk.input_ids[p]) for p in chunk.word_pos[a:b]))
    return {t: sorted(v) for t, v in pool.items()}


def replace_mentions(chunk: Chunk, pool: dict[str, list[tuple[int, ...]]], rng: random.Random, probability: float,
                     max_tokens: int) -> Chunk:
    """The chunk with each eligible mention swapped, with ``probability``, for a random pool mention of its type
    (the chunk stays within ``max_tokens`` tokens)."""
    swaps = [(t, a, b) for t, a, b in mentions(chunk) if pool.get(t) and rng.random() < probability]
    if not swaps:
        return chunk
    ids, labels, pos = chunk.input_ids.tolist(), chunk.labels.tolist(), chunk.word_pos.tolist()
    for entity_type, a, b in reversed(swaps):  # right to left: earlier word indices stay valid
        new = pool[entity_type][rng.randrange(len(pool[entity_type]))]
        if len(ids) - (b - a) + len(new) > max_tokens:
            continue
        first_token, shift = pos[a], len(new) - (b - a)
        ids[first_token:first_token + (b - a)] = list(new)
        labels[a:b] = [LABELS.index(f"B-{entity_type}")] + [_I[entity_type]] * (len(new) - 1)
        pos[a:b] = list(range(first_token, first_token + len(new)))
        pos[a + len(new):] = [p + shift for p in pos[a + len(new):]]
    return Chunk(np.asarray(ids, np.int64), np.asarray(pos, np.int64), np.asarray(labels, np.int64))


def mask_tokens(ids, attention_mask, probability: float, generator, unk_id: int = UNK_ID):
    """Token dropout: each real token of a batch (not [CLS], [SEP] or padding) becomes ``[UNK]`` with ``probability``.

    Why: the tagger memorises the characters of the training entities (see the module docstring); hiding a few of
    them per batch makes the context, and the rest of the mention, carry the decision. ``[UNK]``'s embedding is
    LAC's out-of-vocabulary row, the input an unknown character gives at serving time, and a hidden character also
    hides every lexicon word through it, as an unknown character does. Measured, it does not raise recall on unseen
    entities; it trims false positives a little (docs/experiments.md), so it is off by default."""
    if probability <= 0:
        return ids
    real = (attention_mask > 0) & (ids != CLS_ID) & (ids != SEP_ID)
    hit = (torch.rand(ids.shape, generator=generator) < probability) & real
    return torch.where(hit, torch.full_like(ids, unk_id), ids)


# ------------------------------------------------------------------------------------------------------ noise
# The share of a perturbed chunk's free gaps that get a piece, drawn per chunk: the range holds the benchmark's 5 %
# and 20 %, so the model sees sparse and dense noise alike.
NOISE_RATES = (0.02, 0.25)
JOIN_SIZES = (2, 3, 4)
# The kinds whose pieces may split an entity (``split_share``). Not spaces: a name may be written with a space in it.
SPLIT_KINDS = ("emoji", "rare", "latin", "width")


def entity_runs(tags: Sequence[str]) -> list[Span]:
    """(type, start, end) of every run of entity tags (a B- or I- tag and the I- tags of its type after it): the
    stretches that pieces stay out of."""
    runs, start = [], None
    for k, tag in enumerate(tags):
        if start is not None and tag != "I-" + tags[start][2:]:
            runs.append((tags[start][2:], start, k))
            start = None
        if start is None and tag != "O":
            start = k
    if start is not None:
        runs.append((tags[start][2:], start, len(tags)))
    return runs


def sources(perturbed: Perturbed) -> np.ndarray:
    """For each character of ``perturbed.text``: the index of the original character it stands for (the originals are
    kept in order, one for one), or -1 for a character of an inserted piece."""
    inserted = np.zeros(len(perturbed.text), bool)
    for a, b in perturbed.inserted:
        inserted[a:b] = True
    out = np.full(len(perturbed.text), -1, np.int64)
    out[~inserted] = np.arange(int((~inserted).sum()))
    return out


def retag(source: np.ndarray, tags: Sequence[str]) -> tuple[str, ...]:
    """The tags of a perturbed text from its ``sources``: ``O`` on every inserted piece, the original tags elsewhere."""
    return tuple("O" if k < 0 else tags[k] for k in source.tolist())


def noisy_text(parts: Sequence[tuple[str, Sequence[str]]], kind: str, rng: random.Random, rate: float,
               convert: Callable[[str], str] | None = None,
               split_share: float = 0.0) -> tuple[str, tuple[str, ...], np.ndarray]:
    """One perturbed text, its BIO tags and its ``sources`` (into the parts' texts one after another), from the
    (text, tags) of one chunk, or of several for ``joined``.

    ``emoji``, ``rare`` (``[UNK]`` runs), ``latin``, ``width``, ``space``: pieces in the gaps outside entities at
    ``rate``, tagged ``O`` (``width`` also flips characters' widths, inside entities too, one for one); besides,
    for ``SPLIT_KINDS``, each entity of two or more characters is split by a piece with probability ``split_share``
    and is then no entity: its characters are tagged ``O`` and get no teacher emissions (source -1).
    ``joined``: the parts as one text, with mixed pieces at ``rate`` half of the time; ``traditional``: OpenCC's
    ``convert`` through ``to_traditional``, which keeps one character for one (phrase by phrase, else character by
    character), so the tags stay."""
    if kind == "joined":
        whole = join([Perturbed(text, tuple(entity_runs(tags))) for text, tags in parts])
        tags = tuple(tag for _, part_tags in parts for tag in part_tags)
        if rng.random() < 0.5:
            whole = insert_pieces(whole.text, whole.spans, rng, rate, mixed_piece, whole.seams)
        source = sources(whole)
        return whole.text, retag(source, tags), source
    (text, tags), = parts
    if kind == "traditional":
        return to_traditional(text, (), convert).text, tuple(tags), np.arange(len(text))
    runs = entity_runs(tags)
    split = ([r for r in runs if r[2] - r[1] >= 2 and rng.random() < split_share]
             if split_share > 0 and kind in SPLIT_KINDS else [])
    out = perturb(text, [r for r in runs if r not in split], kind, rng, rate,
                  forced=[rng.randrange(start + 1, end) for _, start, end in split])
    source = sources(out)
    for _, start, end in split:
        source[(source >= start) & (source < end)] = -1
    return out.text, retag(source, tags), source


def char_soft(chunks: Sequence[Chunk], source: np.ndarray) -> np.ndarray | None:
    """The teacher's emissions of ``chunks`` (one after another) at the characters of their perturbed text: a word's
    emissions at its first character when that character is kept, NaN elsewhere (inserted pieces, other characters);
    None when a chunk has none."""
    if any(c.soft is None for c in chunks):
        return None
    original = np.full((sum(len(c.text) for c in chunks), chunks[0].soft.shape[1]), np.nan, np.float32)
    offset = 0
    for c in chunks:
        original[offset + c.word_chars] = c.soft
        offset += len(c.text)
    out = np.full((len(source), original.shape[1]), np.nan, np.float32)
    out[source >= 0] = original[source[source >= 0]]
    return out


class NoiseAugmenter:
    """Per batch, each chunk is perturbed with probability ``share`` by one kind of ``kinds``, drawn evenly (a
    ``joined`` chunk takes the next one to three chunks of the batch with it); the perturbed texts are tokenised as
    training tokenises sentences (``data.encode_sentences``), cut again into chunks of at most ``max_tokens`` and
    labelled in ``labels``' scheme, in the place of the chunks they came from. A batch may so hold a few more tokens
    or rows than its budget. One generator, seeded once, draws everything: a seed and a sequence of batches give the
    same chunks."""

    def __init__(self, tokenizer, labels: list[str], share: float, kinds: Sequence[str], max_tokens: int, seed: int,
                 split_share: float = 0.0):
        unknown = [k for k in kinds if k not in (*PIECES, "joined", "traditional")]
        if unknown or not kinds:
            raise ValueError(f"unknown noise kinds {unknown}" if unknown else "no noise kinds")
        self.tokenizer, self.labels, self.share, self.kinds = tokenizer, labels, share, tuple(kinds)
        self.max_tokens, self.split_share = max_tokens, split_share
        self.rng = random.Random(seed)
        self.convert = None
        if "traditional" in self.kinds:
            import opencc

            self.convert = opencc.OpenCC("s2t").convert
        self.counts: Counter[str] = Counter()  # perturbed texts per kind

    def __call__(self, chunks: list[Chunk]) -> list[Chunk]:
        slots: list[Chunk | int] = []  # a chunk kept as it is, or the index of a perturbed text
        texts: list[tuple[str, tuple[str, ...]]] = []
        softs: list[np.ndarray | None] = []
        k = 0
        while k < len(chunks):
            if self.rng.random() >= self.share:
                slots.append(chunks[k])
                k += 1
                continue
            kind = self.rng.choice(self.kinds)
            group = chunks[k:k + (self.rng.choice(JOIN_SIZES) if kind == "joined" else 1)]
            k += len(group)
            rate = self.rng.uniform(*NOISE_RATES)
            slots.append(len(texts))
            text, tags, source = noisy_text([(c.text, c.tags) for c in group], kind, self.rng, rate, self.convert,
                                            self.split_share)
            texts.append((text, tags))
            softs.append(char_soft(group, source))
            self.counts[kind] += 1
        if not texts:
            return chunks
        encoded = encode_sentences(self.tokenizer, [(list(text), list(tags)) for text, tags in texts])
        for e, soft in zip(encoded, softs):
            e.char_soft = soft
        out = []
        for slot in slots:
            if isinstance(slot, int):
                out.extend(chunks_in_scheme(make_chunks([encoded[slot]], self.max_tokens), self.labels))
            else:
                out.append(slot)
        return out
