"""Texts → encoder rows: tokenise once, cut long texts into overlapping windows, pad rows to a length bucket.

Only the first sub-token of each word is scored (as RaNER does): its row position carries the word's code-point
span ``(start, end)`` in ``word_spans``; every other position ([CLS], [SEP], continuation sub-tokens, padding) carries
``(-1, -1)``. Padding stops at the smallest length bucket that fits, because on a CPU every padded position is paid
for, and the dynamic batcher can only group rows of equal length.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

CLS_ID = 101
SEP_ID = 102
PAD_ID = 0
SPECIAL_TOKENS_PER_ROW = 2


class InputRejected(ValueError):
    """A request the pipeline refuses, with a message meant for the caller."""


@dataclass(frozen=True)
class WindowConfig:
    window_tokens: int = 510
    overlap_tokens: int = 128
    length_buckets: tuple[int, ...] = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
    max_text_chars: int = 100_000
    max_rows_per_request: int = 1024

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_tokens < self.window_tokens:
            raise ValueError("overlap_tokens must be in [0, window_tokens)")
        if max(self.length_buckets) < self.window_tokens + SPECIAL_TOKENS_PER_ROW:
            raise ValueError("the largest length bucket must hold a full window plus [CLS] and [SEP]")

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> "WindowConfig":
        """Reads the string parameters of a Triton model configuration."""
        kwargs: dict = {}
        for name in ("window_tokens", "overlap_tokens", "max_text_chars", "max_rows_per_request"):
            if name in params:
                kwargs[name] = int(params[name])
        if "length_buckets" in params:
            kwargs["length_buckets"] = tuple(int(x) for x in params["length_buckets"].split(","))
        return cls(**kwargs)

    def bucket(self, length: int) -> int:
        return self.length_buckets[bisect.bisect_left(self.length_buckets, length)]


@dataclass
class EncodedBatch:
    """Rows for the encoder and what the decoder needs to map them back to texts."""

    input_ids: np.ndarray  # int64 [rows, L]
    attention_mask: np.ndarray  # int64 [rows, L]
    word_spans: np.ndarray  # int32 [rows, L, 2]; (-1, -1) where a position is not scored
    text_index: np.ndarray  # int32 [rows]; which text of the request a row belongs to
    texts: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(self.input_ids.shape[0])


def source_texts(raw: np.ndarray, batch: EncodedBatch) -> np.ndarray:
    """BYTES [rows, 1]: each text's UTF-8 bytes (``raw``, as the request sent them) on its first row, empty on the
    others, as the decoder reads them."""
    out = np.full((batch.rows, 1), b"", dtype=np.object_)
    for row in np.unique(batch.text_index, return_index=True)[1]:
        out[row, 0] = raw[batch.text_index[row]]
    return out


def load_tokenizer(tokenizer_json: str):
    """The Hugging Face fast tokenizer, from the ``tokenizer.json`` the exporter wrote.

    Special tokens typed in a text (``[SEP]``, ``[PAD]``, ``[CLS]``, ``[MASK]``, ``[UNK]``) are read as the characters
    they are, not as the tokens: a user's "[SEP]" is text, and a ``[PAD]`` inside a row would read as padding. The
    setting is not part of ``tokenizer.json``, so it is made here, where every served tokenizer is loaded."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_json)
    tokenizer.encode_special_tokens = True
    return tokenizer


def _decode_utf8(raw: bytes | str, position: int) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputRejected(f"text {position} is not valid UTF-8 ({err.reason} at byte {err.start})") from None


def window_starts(n_tokens: int, cfg: WindowConfig) -> list[int]:
    """First token of each window; the last window ends exactly at the text's end."""
    if n_tokens <= cfg.window_tokens:
        return [0]
    step = cfg.window_tokens - cfg.overlap_tokens
    last = n_tokens - cfg.window_tokens
    starts = list(range(0, last, step))
    starts.append(last)
    return starts


def _word_spans_per_token(word_ids: list, offsets: list) -> np.ndarray:
    """For each token: its word's (start, end) if it is the word's first sub-token, else (-1, -1)."""
    spans = np.full((len(word_ids), 2), -1, dtype=np.int32)
    first_token_of_word: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is None:
            continue
        start, end = offsets[position]
        first = first_token_of_word.get(word)
        if first is None:
            first_token_of_word[word] = position
            spans[position] = (start, end)
        else:
            spans[first, 1] = end
    return spans


def encode_request(tokenizer, raw: np.ndarray, cfg: WindowConfig) -> EncodedBatch:
    """:func:`encode_texts` of a request's TEXT values (``raw``, UTF-8 bytes as sent); a value that is not UTF-8 raises
    :class:`InputRejected` naming it."""
    return encode_texts(tokenizer, [_decode_utf8(value, position) for position, value in enumerate(raw)], cfg)


def encode_texts(tokenizer, texts: list[str], cfg: WindowConfig) -> EncodedBatch:
    """Tokenises ``texts`` and lays their windows out as rows padded to one length bucket."""
    for position, text in enumerate(texts):
        if len(text) > cfg.max_text_chars:
            raise InputRejected(
                f"text {position} has {len(text)} code points, over the limit max_text_chars={cfg.max_text_chars}"
            )
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []

    pieces: list[tuple[int, np.ndarray, np.ndarray]] = []  # (text index, token ids, word spans) per window
    for text_index, encoding in enumerate(encodings):
        ids = np.asarray(encoding.ids, dtype=np.int64)
        spans = _word_spans_per_token(encoding.word_ids, encoding.offsets)
        for start in window_starts(len(ids), cfg):
            stop = start + cfg.window_tokens
            pieces.append((text_index, ids[start:stop], spans[start:stop]))
    if len(pieces) > cfg.max_rows_per_request:
        raise InputRejected(
            f"the request needs {len(pieces)} windows of {cfg.window_tokens} tokens, over the limit "
            f"max_rows_per_request={cfg.max_rows_per_request}; send fewer or shorter texts per request"
        )

    longest = max((len(ids) for _, ids, _ in pieces), default=0)
    width = cfg.bucket(longest + SPECIAL_TOKENS_PER_ROW)
    rows = len(pieces)
    input_ids = np.full((rows, width), PAD_ID, dtype=np.int64)
    attention_mask = np.zeros((rows, width), dtype=np.int64)
    word_spans = np.full((rows, width, 2), -1, dtype=np.int32)
    text_index = np.zeros(rows, dtype=np.int32)
    for row, (index, ids, spans) in enumerate(pieces):
        n = len(ids)
        input_ids[row, 0] = CLS_ID
        input_ids[row, 1 : n + 1] = ids
        input_ids[row, n + 1] = SEP_ID
        attention_mask[row, : n + 2] = 1
        word_spans[row, 1 : n + 1] = spans
        text_index[row] = index
    return EncodedBatch(input_ids, attention_mask, word_spans, text_index, list(texts))
