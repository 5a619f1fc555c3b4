"""The decoder model's request handling (ner_pipeline.decoding.Decoder.decode_request): rows of several texts, a
text's windows, the texts reassembled from text_index / source_text, one JSON answer per text; tensors that do not fit
together are rejected with a message naming the input and the value (ner_pipeline.validation.decoder_texts)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ner_pipeline import CrfParameters, Decoder, InputRejected
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


def test_with_a_crf_each_text_of_a_request_decodes_as_alone():
    """Texts of many lengths, one with two windows: each text's answer, scores (CRF marginals) included, is what its
    own windows decode to."""
    rng = np.random.default_rng(1)
    c = len(LABELS)
    decoder = Decoder(LABELS, CrfParameters(rng.normal(size=(c, c)), rng.normal(size=c), rng.normal(size=c)))
    names = ["王五", "上海", "联合国"]
    texts = [("😀张三的的北京的的的的联合国的", [(0, "O B-PER I-PER O O B-LOC I-LOC O".split()),
                                         (4, "O B-LOC I-LOC O O O O B-ORG".split())])]
    for t in range(20):
        name = names[t % 3]
        text = "的" * (t % 11) + name + "的" * (t % 5)
        tags = ["O"] * (t % 11) + ["B-PER"] + ["I-PER"] * (len(name) - 1) + ["O"] * (t % 5)
        texts.append((text, [(0, tags)]))
    out = decoder.decode_request(*request_tensors(texts))
    assert [json.loads(row[0]) for row in out] == [
        decoder.decode_text(text, window_rows(text, LABELS, windows, seed=t)) for t, (text, windows) in enumerate(texts)]
    assert all(answers(out)) and all(0 < e["score"] <= 1 for row in out for e in json.loads(row[0]))


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


def _set(index, value):
    def change(array):
        array = array.copy()
        array[index] = value
        return array
    return change


BAD = {  # input → change → the error message
    "labels": ("logits", lambda x: x[:, :, :-1], "logits [2, 9, 6] must be [rows, positions, 7]"),
    "positions": ("word_spans", lambda x: x[:, :-1], "word_spans [2, 8, 2] must be [2, 9, 2], as logits [2, 9, 7]"),
    "rows": ("text_index", lambda x: x[:1], "text_index [1, 1] must be [2, 1], one per row of logits"),
    "nan": ("logits", _set((1, 2, 3), np.nan), "logits holds nan at [1, 2, 3]; scores must be finite"),
    "inf": ("logits", _set((0, 1, 0), -np.inf), "logits holds -inf at [0, 1, 0]; scores must be finite"),
    "negative_text": ("text_index", _set((1, 0), -1), "text_index holds -1 at row 1; texts are numbered from 0"),
    "gap": ("text_index", lambda x: x * 2, "text_index numbers texts up to 2 but no row belongs to text 1"),
    "utf8": ("source_text", _set((1, 0), b"\xe5\xbc"),
             "source_text of text 1 (row 1) is not valid UTF-8 (unexpected end of data at byte 0)"),
    "past_the_text": ("word_spans", _set((1, 1), (0, 3)),
                      "word_spans holds [0, 3] at row 1, position 1: not (-1, -1) nor a span of text 1, which has 2 "
                      "code points"),
    "reversed": ("word_spans", _set((0, 2), (2, 1)),
                 "word_spans holds [2, 1] at row 0, position 2: not (-1, -1) nor a span of text 0, which has 5 code "
                 "points"),
    "half_unscored": ("word_spans", _set((0, 0), (-1, 4)),
                      "word_spans holds [-1, 4] at row 0, position 0: not (-1, -1) nor a span of text 0, which has 5 "
                      "code points"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_tensors_that_do_not_fit_together_are_rejected_by_name(case):
    texts = [("王五在上海", [(0, "B-PER I-PER O B-LOC I-LOC".split())]), ("赵六", [(0, "B-PER I-PER".split())])]
    tensors = dict(zip(("logits", "word_spans", "text_index", "source_text"), request_tensors(texts)))
    decoder = Decoder(LABELS)
    assert answers(decoder.decode_request(**tensors)) == [[("PER", 0, 2, "王五"), ("LOC", 3, 5, "上海")],
                                                          [("PER", 0, 2, "赵六")]]
    name, change, message = BAD[case]
    tensors[name] = change(tensors[name])
    with pytest.raises(InputRejected) as info:
        decoder.decode_request(**tensors)
    assert str(info.value) == message
