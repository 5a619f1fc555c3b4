"""Training-time augmentation. Mention replacement: an entity of a chunk is swapped for another training entity of the
same type. Token dropout (``mask_tokens``): a few characters of each batch are hidden as ``[UNK]``.

Why: 42 % of the dev entities never occur in train, and the fine-tuned tagger recalls 74.7 % of those against 90.8 %
of the seen ones (docs/experiments.md): it memorises entity strings. Swapping mentions keeps every context and
label sequence but breaks the link between a context and one string, so the context has to carry the decision.

Only mentions whose words are each exactly one token (every CJK character is) are swapped or used as replacements,
so a swap is a plain substitution of token ids and labels, with no re-tokenisation.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .data import CLS_ID, LABELS, SEP_ID, UNK_ID, Chunk

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
