"""The decoder model's request handling (ner_pipeline.decoding.Decoder.decode_request): rows of several texts, a
text's windows, the texts reassembled from text_index / source_text, one JSON answer per text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ner_pipeline import Decoder
from test_decoder_golden import labels_for, window_rows

pytestmark = pytest.mark.unit

LABELS = labels_for("BIO")


def request_tensors(texts: list[tuple[str, list]]):
    """The decoder's inputs for ``texts`` [(text, windows)], rows laid out as the tokenizer lays them: each text's
    windows in order, padded to the request's longest row; text_index [rows, 1]; source_text [rows, 1], the text on
    its first row and empty on the others."""
    rows, text_index, source_text = [], [], []
    for t, (text, windows) in enumerate(texts):
        for k, (logits, spans) in enumerate(window_rows(text, LABELS, windows, seed=t)):
            rows.append((logits, spans))
            text_index.append([t])
            source_text.append([text.encode("utf-8") if k == 0 else b""])
    width = max((len(logits) for logits, _ in rows), default=0)
    logits = np.zeros((len(rows), width, len(LABELS)), dtype=np.float32)
    spans = np.full((len(rows), width, 2), -1, dtype=np.int32)
    for r, (row_logits, row_spans) in enumerate(rows):
        logits[r, : len(row_logits)], spans[r, : len(row_spans)] = row_logits, row_spans
    return (logits, spans, np.array(text_index, dtype=np.int32).reshape(-1, 1),
            np.array(source_text, dtype=np.object_).reshape(-1, 1))


def answers(out: np.ndarray) -> list[list[tuple]]:
    return [[(e["type"], e["start"], e["end"], e["span"]) for e in json.loads(row[0].decode("utf-8"))] for row in out]


def test_a_request_of_several_texts_one_with_windows():
    long_text = "😀张三的的北京的的的的联合国的"  # code points: the emoji is one
    texts = [
        ("王五在上海", [(0, "B-PER I-PER O B-LOC I-LOC".split())]),
        (long_text, [(0, "O B-PER I-PER O O B-LOC I-LOC O".split()), (4, "O B-LOC I-LOC O O O O B-ORG".split()),
                     (8, "O O O B-ORG I-ORG I-ORG O".split())]),
        ("今天下雨", [(0, "O O O O".split())]),
    ]
    tensors = request_tensors(texts)
    assert len(tensors[0]) == 5  # five rows, the second text's three windows among them

    decoder = Decoder(LABELS)
    out = decoder.decode_request(*tensors)

    assert out.shape == (3, 1) and out.dtype == np.object_
    assert answers(out) == [
        [("PER", 0, 2, "王五"), ("LOC", 3, 5, "上海")],
        [("PER", 1, 3, "张三"), ("LOC", 5, 7, "北京"), ("ORG", 11, 14, "联合国")],
        [],
    ]
    # Scores included: each text's answer is what its own windows, unpadded, decode to.
    assert [json.loads(row[0]) for row in out] == [
        decoder.decode_text(text, window_rows(text, LABELS, windows, seed=t)) for t, (text, windows) in enumerate(texts)]


def test_rows_are_grouped_by_text_index_not_by_their_order():
    texts = [("王五在上海", [(0, "B-PER I-PER O B-LOC I-LOC".split())]), ("赵六", [(0, "B-PER I-PER".split())])]
    logits, spans, text_index, source_text = request_tensors(texts)
    swapped = [1, 0]
    out = Decoder(LABELS).decode_request(logits[swapped], spans[swapped], text_index[swapped], source_text[swapped])
    assert answers(out) == [[("PER", 0, 2, "王五"), ("LOC", 3, 5, "上海")], [("PER", 0, 2, "赵六")]]


def test_a_request_without_rows_has_no_texts():
    out = Decoder(LABELS).decode_request(np.zeros((0, 4, len(LABELS)), np.float32), np.zeros((0, 4, 2), np.int32),
                                         np.zeros((0, 1), np.int32), np.zeros((0, 1), np.object_))
    assert out.shape == (0, 1)
