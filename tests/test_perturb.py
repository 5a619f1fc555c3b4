"""The perturbations of ner_model.perturb (training's noise augmentation and the robustness benchmark share them) and
the benchmark's corpora: gold offsets move exactly, no piece lands inside an entity, the rate is the share of free
gaps that get a piece, and the same seed gives the same corpus."""

from __future__ import annotations

import random

import pytest

from evaluation import perturb as B
from ner_model import perturb as P

pytestmark = pytest.mark.unit

SENTENCES = [
    ("张三在北京的清华大学读书，李四去了上海。", (("PER", 0, 2), ("LOC", 3, 5), ("ORG", 6, 10), ("PER", 13, 15),
                                   ("LOC", 17, 19))),
    ("１９９８年ＮＢＡ总决赛在美国犹他州举行", (("ORG", 5, 8), ("LOC", 12, 14), ("LOC", 14, 17))),
    ("没有实体的句子。", ()),
    ("欧阳娜娜", (("PER", 0, 4),)),
    ("据新华社北京３月２日电", (("ORG", 1, 4), ("LOC", 4, 6))),
] * 40
INSERTION_KINDS = ("emoji", "rare", "latin", "width", "space", "mixed")


def entity_texts(text, spans):
    return [text[s:e] for _, s, e in spans]


@pytest.mark.parametrize("kind", INSERTION_KINDS)
def test_pieces_go_only_into_free_gaps_and_gold_offsets_move_exactly(kind):
    for i, (text, spans) in enumerate(SENTENCES):
        rng = random.Random(i)
        out = P.perturb(text, spans, kind, rng, 0.5)
        original = [text[s:e] for _, s, e in spans]
        converted = [P.other_width(c) for c in text] if kind == "width" else None
        if kind == "width":  # characters may have flipped width, one for one
            assert [len(t) for t in entity_texts(out.text, out.spans)] == [len(t) for t in original]
            for got, want in zip(entity_texts(out.text, out.spans), original):
                assert all(g == w or g == P.other_width(w) for g, w in zip(got, want))
        else:
            assert entity_texts(out.text, out.spans) == original
        assert [t for t, _, _ in out.spans] == [t for t, _, _ in spans]
        # No inserted range overlaps a gold entity, and removing the inserted ranges gives the sentence back.
        for a, b in out.inserted:
            assert a < b
            assert all(b <= s or e <= a for _, s, e in out.spans)
        kept, last = [], 0
        for a, b in out.inserted:
            kept.append(out.text[last:a])
            last = b
        kept.append(out.text[last:])
        restored = "".join(kept)
        if kind == "width":
            assert len(restored) == len(text)
            assert all(r == c or r == o for r, c, o in zip(restored, text, converted))
        else:
            assert restored == text


def test_the_rate_is_the_share_of_free_gaps_that_get_a_piece():
    for rate in (0.05, 0.2):
        free = pieces = 0
        for i, (text, spans) in enumerate(SENTENCES * 5):
            free += len(P.gaps(len(text), spans))
            pieces += len(P.perturb(text, spans, "emoji", random.Random(i), rate).inserted)
        assert abs(pieces / free - rate) < 0.25 * rate, (rate, pieces / free)


def test_gaps_exclude_only_positions_strictly_inside_an_entity():
    assert P.gaps(6, [("PER", 1, 3), ("LOC", 3, 5)]) == [0, 1, 3, 5, 6]


def test_a_piece_that_would_run_into_a_word_is_set_off_by_a_space():
    out = P.insert_pieces("ab中", [], random.Random(0), 1.0, lambda rng: "xy")
    assert out.text == "xy a xy b xy中xy"
    assert [out.text[a:b] for a, b in out.inserted] == ["xy ", " xy ", " xy", "xy"]


@pytest.mark.parametrize("kind", ("emoji", "latin", "width", "joined"))
def test_the_same_seed_gives_the_same_corpus_and_another_seed_another(kind):
    sentences = SENTENCES[:20]
    first = B.corpus(sentences, kind, 0.2, seed=7)
    assert first == B.corpus(sentences, kind, 0.2, seed=7)
    assert first != B.corpus(sentences, kind, 0.2, seed=8)
    # A shorter run (--limit) perturbs its sentences as the longer one does.
    prefix = B.corpus(sentences[:8], kind, 0.2, seed=7)
    assert prefix == first[:len(prefix)]


def test_emoji_pieces_include_zwj_sequences_flags_and_skin_tones():
    rng = random.Random(0)
    pieces = "".join(P.emoji_piece(rng) for _ in range(500))
    assert "\u200d" in pieces
    assert any(0x1F1E6 <= ord(c) <= 0x1F1FF for c in pieces)
    assert any(0x1F3FB <= ord(c) <= 0x1F3FF for c in pieces)


def test_rare_pieces_are_mostly_cjk_extension_b():
    rng = random.Random(0)
    chars = "".join(P.rare_piece(rng) for _ in range(500))
    assert sum(0x20000 <= ord(c) <= 0x2A6DF for c in chars) > 0.4 * len(chars)


def test_rare_pieces_are_unknown_to_the_default_models_tokenizer(default_tokenizer):
    """Every character a rare piece can hold reaches the model as [UNK], after the tokenizer's normalization."""
    backend = default_tokenizer.backend_tokenizer
    unknown = backend.token_to_id("[UNK]")
    chars = [chr(c) for (first, last), _ in P._RARE_BLOCKS for c in range(first, last + 1)
             if chr(c) not in P._IN_VOCABULARY]
    known = [c for c, encoding in zip(chars, backend.encode_batch(chars, add_special_tokens=False))
             if encoding.ids != [unknown]]
    assert len(chars) > 60_000 and not known, [f"U+{ord(c):04X}" for c in known[:10]]
    rng = random.Random(0)
    assert not set("".join(P.rare_piece(rng) for _ in range(5000))) & P._IN_VOCABULARY


def test_joined_texts_keep_every_entity_and_their_seams():
    sentences = SENTENCES[:10]
    joined = B.corpus(sentences, "joined", 0.0, seed=1, join_size=4)
    assert [j.text for j in joined] == ["".join(t for t, _ in sentences[k:k + 4]) for k in range(0, 10, 4)]
    assert [len(j.seams) for j in joined] == [3, 3, 1]
    assert joined[0].seams[0] == len(sentences[0][0])
    for j, k in zip(joined, range(0, 10, 4)):
        assert entity_texts(j.text, j.spans) == [t[s:e] for t, spans in sentences[k:k + 4] for _, s, e in spans]
    noisy = B.corpus(sentences, "joined", 0.5, seed=1, join_size=4)
    for j, k in zip(noisy, range(0, 10, 4)):
        assert entity_texts(j.text, j.spans) == [t[s:e] for t, spans in sentences[k:k + 4] for _, s, e in spans]
        # The seam still separates the sentences: the text before it ends with the first sentence.
        assert j.text[:j.seams[0]].endswith(sentences[k][0][-1])


def test_traditional_keeps_offsets_and_falls_back_to_single_characters_when_a_phrase_changes_length():
    text, spans = SENTENCES[0]
    out = P.to_traditional(text, spans, lambda s: s.replace("清华大学", "清華大學"))
    assert out.text == "张三在北京的清華大學读书，李四去了上海。" and out.spans == spans
    one_by_one = P.to_traditional(text, spans, lambda s: s.replace("北京", "北平市") if len(s) > 1 else s.replace("读", "讀"))
    assert one_by_one.text == text.replace("读", "讀") and one_by_one.spans == spans


def test_traditional_through_opencc_converts_msra_style_text():
    import opencc

    out = B.corpus([SENTENCES[0]], "traditional", 0.0, seed=1, convert=opencc.OpenCC("s2t").convert)[0]
    assert entity_texts(out.text, out.spans) == ["張三", "北京", "清華大學", "李四", "上海"]


def test_a_prediction_is_stray_when_it_holds_a_piece_a_sentence_end_a_line_break_or_a_seam():
    out = P.Perturbed("张三😀李四。王五\n赵六", (), inserted=((2, 3),), seams=(6,))
    assert B.stray((0, 3), out) and B.stray((2, 5), out)  # holds the emoji
    assert not B.stray((0, 2), out) and not B.stray((3, 5), out)
    assert B.stray((3, 6), out)  # holds 。
    assert B.stray((6, 11), out)  # holds the line break
    assert B.stray((5, 8), out)  # crosses the seam
    assert not B.stray((6, 8), out)
