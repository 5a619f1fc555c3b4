"""MSRA-style BIO data for training: tokenisation into the server's word units, chunking and batching.

The serving path (see the decoder model) tokenises a text with the bert-base-chinese fast tokenizer, wraps it as
``[CLS] tokens [SEP]`` and scores only the first sub-token of every word (``word_ids``: each CJK character alone, a
Latin/digit run one word). Training reproduces exactly that: a sentence's characters are joined into one string,
tokenised, and each word is labelled with the tag of its first character.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from export.tokenizer_files import vocabulary
from ner_model.data import WHITESPACE_TOKEN
from ner_pipeline import tagging
from ner_pipeline.windows import CLS_ID, PAD_ID, SEP_ID

ENTITY_TYPES = ("PER", "LOC", "ORG")
LABELS = tagging.scheme_labels("BIO", ENTITY_TYPES)  # the corpus's, in which data is read
TAG_SCHEMES = {"bio": "BIO", "bioes": "BIOES"}  # --tag-scheme → the scheme's name in ner_pipeline.tagging
UNK_ID = 100
OUTSIDE_ID = 0  # "O" in every scheme's labels (ner_pipeline.tagging.scheme_labels)
# Characters after which a long sentence is preferably cut into chunks.
CUT_AFTER = set("。！？；，、：!?;,:")


def split_train_dev(sentences, dev_size: int):
    """Deterministic split: the last ``dev_size`` sentences of train are the dev set."""
    if dev_size <= 0:
        return sentences, []
    return sentences[:-dev_size], sentences[-dev_size:]


# --------------------------------------------------------------------------------------------------- tokenizer files
def vocab_lines(vocab_file) -> list[str]:
    """The tokens of a ``vocab.txt``, one a line (line number = token id)."""
    lines = Path(vocab_file).read_text(encoding="utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def check_vocab_ids(tokenizer, vocab_file) -> None:
    """Token ids must be the vocabulary's line numbers: the embedding rows were initialised by line."""
    lines = vocab_lines(vocab_file)
    # bert-base-chinese's vocab repeats 53 "##x" lines; the tokenizer (like the original) maps a repeated token to
    # its last line. Every other token's id must be its line number.
    last = {t: i for i, t in enumerate(lines)}
    vocab = vocabulary(tokenizer, WHITESPACE_TOKEN)
    if max(vocab.values()) != len(lines) - 1 or len(vocab) != len(last):
        raise RuntimeError(f"tokenizer vocab ({len(vocab)} tokens) does not match {vocab_file} ({len(lines)} lines)")
    bad = [t for t, i in last.items() if vocab.get(t) != i]
    if bad:
        raise RuntimeError(f"token ids differ from vocab line numbers for {len(bad)} tokens, e.g. {bad[:5]}")


# --------------------------------------------------------------------------------------------------- encoding
@dataclass
class Encoded:
    """One sentence in the server's units (no [CLS]/[SEP])."""

    token_ids: list[int]
    word_token: list[int]  # index (into token_ids) of each word's first sub-token
    word_char_start: list[int]  # first character of each word
    word_char_end: list[int]  # one past the last character covered by the word
    word_labels: list[int]  # label id of each word (its first character's tag); -1 if unknown
    n_chars: int = 0
    chars: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    # A teacher's emissions at each character that starts one of its words ([n_chars, C], NaN elsewhere), carried
    # through noise augmentation to the words of the perturbed text (training/distill.py).
    char_soft: np.ndarray | None = None


def encode_sentences(tokenizer, sentences, label2id=None, batch_size: int = 2000) -> list[Encoded]:
    label2id = label2id or {l: i for i, l in enumerate(LABELS)}
    out: list[Encoded] = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start : start + batch_size]
        texts = ["".join(chars) for chars, _ in chunk]
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        for b, (chars, tags) in enumerate(chunk):
            ids = enc["input_ids"][b]
            offsets = enc["offset_mapping"][b]
            wids = enc.word_ids(b)
            word_token, wstart, wend, wlab = [], [], [], []
            prev = None
            for k, w in enumerate(wids):
                if w is None:
                    continue
                if w != prev:
                    word_token.append(k)
                    s = offsets[k][0]
                    wstart.append(s)
                    wend.append(offsets[k][1])
                    wlab.append(label2id.get(tags[s], -1) if tags else -1)
                else:
                    wend[-1] = max(wend[-1], offsets[k][1])
                prev = w
            out.append(Encoded(ids, word_token, wstart, wend, wlab, len(chars), chars, tags))
    return out


def _cut_points(e: Encoded, max_tokens: int) -> list[int]:
    """Word indices at which to start new chunks so that each chunk has at most ``max_tokens`` tokens."""
    n_words = len(e.word_token)
    starts = [0]
    while True:
        w0 = starts[-1]
        t0 = e.word_token[w0]
        if len(e.token_ids) - t0 <= max_tokens:
            return starts
        # last word that can start the next chunk: its first token index - t0 <= max_tokens
        limit = w0 + 1
        while limit < n_words and e.word_token[limit] - t0 <= max_tokens:
            limit += 1
        limit -= 1  # words w0..limit-1 fit entirely; next chunk may start at `limit`
        limit = max(limit, w0 + 1)
        best = None
        for w in range(limit, max(w0 + 1, limit - max_tokens // 2), -1):
            prev_char = e.chars[e.word_char_start[w - 1]] if e.chars else ""
            not_inside = e.word_labels[w] < 0 or not LABELS[e.word_labels[w]].startswith("I-")
            if prev_char in CUT_AFTER and not_inside:
                best = w
                break
            if best is None and not_inside:
                best = w  # fallback: an entity boundary
        starts.append(best if best is not None else limit)


@dataclass
class Chunk:
    input_ids: np.ndarray  # [CLS] tokens [SEP]
    word_pos: np.ndarray  # positions (in input_ids) of the scored tokens
    labels: np.ndarray
    # The characters the chunk was cut from and their BIO tags: noise augmentation perturbs these and tokenises again.
    text: str = ""
    tags: tuple[str, ...] = ()
    word_chars: np.ndarray | None = None  # the character of ``text`` that starts each word
    soft: np.ndarray | None = None  # distillation: the teacher's emissions of each word ([n_words, C], NaN: none)


def make_chunks(encoded: list[Encoded], max_tokens: int) -> list[Chunk]:
    """Cut sentences into chunks of at most ``max_tokens`` tokens (including [CLS] and [SEP])."""
    body = max_tokens - 2
    chunks = []
    for e in encoded:
        if not e.word_token:
            continue
        starts = _cut_points(e, body) + [len(e.word_token)]
        for a, b in zip(starts[:-1], starts[1:]):
            t0 = e.word_token[a]
            t1 = e.word_token[b] if b < len(e.word_token) else len(e.token_ids)
            ids = [CLS_ID] + e.token_ids[t0:t1] + [SEP_ID]
            pos = [t - t0 + 1 for t in e.word_token[a:b]]
            # chunks meet at a word's first character, so tokenising a chunk's text alone gives the chunk's words
            c0 = e.word_char_start[a] if a else 0
            c1 = e.word_char_start[b] if b < len(e.word_token) else e.n_chars
            starts = np.asarray(e.word_char_start[a:b], np.int64)
            chunks.append(Chunk(np.asarray(ids, np.int64), np.asarray(pos, np.int64),
                                np.asarray(e.word_labels[a:b], np.int64),
                                "".join(e.chars[c0:c1]), tuple(e.tags[c0:c1]), starts - c0,
                                None if e.char_soft is None else e.char_soft[starts]))
    return chunks


def collate(chunks: list[Chunk]):
    """Right-padded batch tensors (numpy): input_ids, attention_mask, word_pos, word_mask, labels."""
    B = len(chunks)
    L = max(len(c.input_ids) for c in chunks)
    T = max(len(c.word_pos) for c in chunks)
    ids = np.zeros((B, L), np.int64)
    mask = np.zeros((B, L), np.int64)
    pos = np.zeros((B, T), np.int64)
    wmask = np.zeros((B, T), bool)
    labels = np.zeros((B, T), np.int64)
    for i, c in enumerate(chunks):
        ids[i, : len(c.input_ids)] = c.input_ids
        mask[i, : len(c.input_ids)] = 1
        n = len(c.word_pos)
        pos[i, :n] = c.word_pos
        wmask[i, :n] = True
        labels[i, :n] = np.maximum(c.labels, 0)
    return ids, mask, pos, wmask, labels


def collate_soft(chunks: list[Chunk], num_labels: int, inserted: np.ndarray | None = None):
    """The teacher's word emissions of a batch as collated by ``collate`` ([B, T, C], zero where there are none) and
    where they exist ([B, T] bool): padding, chunks without them and words of inserted noise have none, unless
    ``inserted`` ([C]) stands in for the teacher at the gold-O words it has no emissions for (inserted noise)."""
    T = max(len(c.word_pos) for c in chunks)
    soft = np.zeros((len(chunks), T, num_labels), np.float32)
    have = np.zeros((len(chunks), T), bool)
    for i, c in enumerate(chunks):
        if c.soft is None:
            continue
        n = len(c.word_pos)
        known = ~np.isnan(c.soft).any(axis=1)
        rows = np.where(known[:, None], c.soft, 0)
        if inserted is not None:
            stand_in = ~known & (c.labels == OUTSIDE_ID)
            rows[stand_in] = inserted
            known = known | stand_in
        soft[i, :n] = rows
        have[i, :n] = known
    return soft, have


def bucket_batches(chunks: list[Chunk], max_batch_tokens: int, max_batch_size: int, rng: random.Random,
                   shuffle: bool = True):
    """Group chunks of similar length: sort by length (with jitter), cut by padded token budget, shuffle batches."""
    if shuffle:
        order = sorted(range(len(chunks)), key=lambda i: (len(chunks[i].input_ids) + rng.random() * 4))
    else:
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i].input_ids))
    batches, cur, cur_max = [], [], 0
    for i in order:
        n = len(chunks[i].input_ids)
        new_max = max(cur_max, n)
        if cur and (new_max * (len(cur) + 1) > max_batch_tokens or len(cur) >= max_batch_size):
            batches.append(cur)
            cur, new_max = [], n
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    if shuffle:
        rng.shuffle(batches)
    return batches


# --------------------------------------------------------------------------------------------------- tag schemes
def scheme_labels(scheme: str) -> list[str]:
    """The model's labels under a ``--tag-scheme`` (``bio``: the corpus's; ``bioes``: E ends a span of several words,
    S is a span of one)."""
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; one of {', '.join(TAG_SCHEMES)}")
    return tagging.scheme_labels(TAG_SCHEMES[scheme], ENTITY_TYPES)


def bio_to_scheme(bio_ids: np.ndarray, labels: list[str]) -> np.ndarray:
    """Word label ids in BIO (``LABELS``) → ids in ``labels`` (BIO or BIOES); unknown labels (-1) stay -1. A span's
    last word becomes E (or S when it is also its first) when the next word does not continue it."""
    index = {label: i for i, label in enumerate(labels)}
    if labels == LABELS:
        return bio_ids.copy()
    out = np.full_like(bio_ids, -1)
    for k, label_id in enumerate(bio_ids.tolist()):
        if label_id < 0:
            continue
        label = LABELS[label_id]
        if label == "O":
            out[k] = index["O"]
            continue
        nxt = LABELS[bio_ids[k + 1]] if k + 1 < len(bio_ids) and bio_ids[k + 1] >= 0 else "O"
        continued = nxt == "I-" + label[2:]
        prefix = {("B", True): "B", ("B", False): "S", ("I", True): "I", ("I", False): "E"}[(label[0], continued)]
        out[k] = index[f"{prefix}-{label[2:]}"]
    return out


def chunks_in_scheme(chunks: list[Chunk], labels: list[str]) -> list[Chunk]:
    """The training chunks with their BIO labels rewritten in ``labels``' scheme (chunks are cut between entities, so
    rewriting each chunk alone equals rewriting whole sentences)."""
    if labels == LABELS:
        return chunks
    return [replace(c, labels=bio_to_scheme(c.labels, labels)) for c in chunks]


# --------------------------------------------------------------------------------------------------- char-level tags
def word_tags_to_char_tags(e: Encoded, word_tags: list[str], scheme: str = "BIO") -> list[str]:
    """Map predicted word tags back to characters, in IOB2 (what seqeval scores).

    The word tags are chunked into entities exactly as the serving decoder chunks them (``ner_pipeline.tagging``,
    strict: a stray I or E opens nothing); an entity's first character is ``B-<type>`` and its other characters, up to
    the end of its last word, ``I-<type>``. Everything else is ``O``.
    """
    out = ["O"] * e.n_chars
    for kind, first, last in tagging.chunk([tagging.parse_label(tag) for tag in word_tags], scheme):
        start, end = e.word_char_start[first], min(e.word_char_end[last], e.n_chars)
        out[start] = "B-" + kind
        for c in range(start + 1, end):
            out[c] = "I-" + kind
    return out
