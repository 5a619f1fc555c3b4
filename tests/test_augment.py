"""Training's noise augmentation (training/augment.py, ``--noise-share``): perturbed chunks keep every gold entity's
text and label, inserted pieces are tagged O, joined chunks keep their labels, Traditional keeps one character for one,
the chunks are tokenised again as training tokenises sentences, and a seed gives the same batches."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from training import data as D
from training.augment import SPLIT_KINDS, NoiseAugmenter, entity_runs, noisy_text

pytestmark = pytest.mark.unit

INSERTION_KINDS = ("emoji", "rare", "latin", "space")
ALL_KINDS = ("emoji", "rare", "latin", "width", "space", "joined", "traditional")


def tagged(text: str, entities: list[tuple[str, str]]) -> tuple[str, tuple[str, ...]]:
    """``text`` with BIO tags: each (type, mention) marks the mention's first occurrence after the previous one."""
    tags, at = ["O"] * len(text), 0
    for kind, mention in entities:
        start = text.index(mention, at)
        tags[start:start + len(mention)] = [f"B-{kind}"] + [f"I-{kind}"] * (len(mention) - 1)
        at = start + len(mention)
    return text, tuple(tags)


SENTENCES = [
    tagged("张三在北京的清华大学读书，李四去了上海。", [("PER", "张三"), ("LOC", "北京"), ("ORG", "清华大学"), ("PER", "李四"),
                                     ("LOC", "上海")]),
    tagged("１９９８年ＮＢＡ总决赛在美国犹他州举行", [("ORG", "ＮＢＡ"), ("LOC", "美国"), ("LOC", "犹他州")]),
    tagged("没有实体的句子。", []),
    tagged("欧阳娜娜", [("PER", "欧阳娜娜")]),
    tagged("据新华社北京３月２日电，IBM公司与中国银行签约。", [("ORG", "新华社"), ("LOC", "北京"), ("ORG", "IBM公司"),
                                          ("ORG", "中国银行")]),
    tagged("国务院总理李鹏今天在人民大会堂会见了日本客人，双方就中日关系交换了意见。" * 3,
           [("ORG", "国务院"), ("PER", "李鹏"), ("LOC", "人民大会堂"), ("LOC", "日本")] * 3),
] * 6


@pytest.fixture(scope="module")
def tokenizer(default_tokenizer):
    return default_tokenizer


@pytest.fixture(scope="module")
def chunks(tokenizer):
    """The sentences as training chunks of at most 48 tokens, in the corpus's BIO labels."""
    found = D.make_chunks(D.encode_sentences(tokenizer, [(list(t), list(g)) for t, g in SENTENCES]), 48)
    assert len(found) > len(SENTENCES)  # the long sentence is cut
    return found


def aligned(text: str, perturbed: str) -> list[int]:
    """Where each character of ``text`` is in ``perturbed``, which holds it in order with other characters between."""
    at, k = [], 0
    for char in text:
        k = perturbed.index(char, k)
        at.append(k)
        k += 1
    return at


def mentions(text, tags):
    return [(kind, text[start:end]) for kind, start, end in entity_runs(tags)]


def chunk_entities(tokenizer, chunk_list):
    """(type, the entity's tokens) of every entity in the chunks' BIO word labels, in order."""
    found = []
    for chunk in chunk_list:
        labels = [D.LABELS[i] for i in chunk.labels]
        ends = list(chunk.word_pos[1:]) + [len(chunk.input_ids) - 1]
        for kind, first, last in entity_runs(labels):
            tokens = chunk.input_ids[chunk.word_pos[first]:ends[last - 1]]
            found.append((kind, tuple(tokenizer.convert_ids_to_tokens(tokens.tolist()))))
    return found


def test_entity_runs_are_the_stretches_pieces_stay_out_of():
    tags = ("B-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "B-ORG", "I-LOC", "O", "B-LOC")
    assert entity_runs(tags) == [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 6), ("ORG", 6, 7), ("LOC", 7, 8),
                                 ("LOC", 9, 10)]


@pytest.mark.parametrize("kind", INSERTION_KINDS + ("width",))
def test_pieces_keep_every_entity_s_text_and_label(kind):
    grew = 0
    for i, (text, tags) in enumerate(SENTENCES):
        new_text, new_tags, _ = noisy_text([(text, tags)], kind, random.Random(i), 0.5)
        assert len(new_tags) == len(new_text)
        grew += len(new_text) > len(text)
        got, want = mentions(new_text, new_tags), mentions(text, tags)
        if kind == "width":  # characters flip width one for one, inside entities too
            assert [(k, len(m)) for k, m in got] == [(k, len(m)) for k, m in want]
        else:
            assert got == want
        assert [t for t in new_tags if t != "O"] == [t for t in tags if t != "O"]
    assert grew > 0.8 * len(SENTENCES)


@pytest.mark.parametrize("kind", SPLIT_KINDS)
def test_a_split_entity_holds_a_piece_and_is_no_entity(kind):
    """--noise-split-entities: an entity of two or more characters gets a piece strictly inside it and is tagged O
    from end to end, with no teacher emissions (source -1); one-character entities stay as they are."""
    split = 0
    for i, (text, tags) in enumerate(SENTENCES):
        new_text, new_tags, source = noisy_text([(text, tags)], kind, random.Random(i), 0.05, split_share=1.0)
        assert len(new_tags) == len(new_text) == len(source)
        assert all(end - start == 1 for _, start, end in entity_runs(new_tags))
        kept = source[source >= 0]
        assert kept.tolist() == sorted(kept.tolist())
        for _, start, end in entity_runs(tags):
            if end - start < 2:
                continue
            split += 1
            assert not (set(range(start, end)) & set(kept.tolist()))  # no teacher emissions on the entity's chars
            if kind in ("emoji", "rare"):  # pieces share no character with the text: align it greedily
                at = aligned(text, new_text)
                assert at[end - 1] - at[start] > end - start - 1  # a piece between the entity's first and last
    assert split > len(SENTENCES)


@pytest.mark.parametrize("kind", ("space", "joined", "traditional"))
def test_other_kinds_split_no_entity(kind):
    for i, (text, tags) in enumerate(SENTENCES[:6]):
        parts = [(text, tags)] * (2 if kind == "joined" else 1)
        new_text, new_tags, _ = noisy_text(parts, kind, random.Random(i), 0.3, split_share=1.0, convert=str)
        assert [t for t in new_tags if t != "O"] == [t for _, part in parts for t in part if t != "O"]


@pytest.mark.parametrize("kind", INSERTION_KINDS)
def test_inserted_characters_are_tagged_o(kind):
    """Aligning the perturbed text with the sentence: every character that is not the sentence's next one belongs to
    a piece and is tagged O; every sentence character keeps its tag."""
    for i, (text, tags) in enumerate(SENTENCES):
        new_text, new_tags, _ = noisy_text([(text, tags)], kind, random.Random(100 + i), 0.3)
        k = 0
        for char, tag in zip(new_text, new_tags):
            if k < len(text) and char == text[k] and tag == tags[k]:
                k += 1
            else:
                assert tag == "O", (new_text, char)
        assert k == len(text)


@pytest.mark.parametrize("kind", INSERTION_KINDS + ("joined",))
def test_chunks_keep_every_entity_s_tokens_and_label(tokenizer, chunks, kind):
    noise = NoiseAugmenter(tokenizer, D.LABELS, 1.0, (kind,), 48, seed=3)
    out = noise(chunks)
    assert noise.counts[kind] > 0 and [c.text for c in out] != [c.text for c in chunks]
    assert chunk_entities(tokenizer, out) == chunk_entities(tokenizer, chunks)
    for chunk in out:
        assert len(chunk.input_ids) <= 48 and chunk.input_ids[0] == D.CLS_ID and chunk.input_ids[-1] == D.SEP_ID
        assert len(chunk.labels) == len(chunk.word_pos) and (chunk.labels >= 0).all()
    # More words, the same entity words: every inserted word is labelled O.
    assert sum(len(c.labels) for c in out) > sum(len(c.labels) for c in chunks) or kind == "space"
    assert sum(int((c.labels > 0).sum()) for c in out) == sum(int((c.labels > 0).sum()) for c in chunks)


def test_joined_chunks_hold_several_chunks_labels_in_order(tokenizer, chunks):
    short = [c for c in chunks if len(c.input_ids) < 16]
    noise = NoiseAugmenter(tokenizer, D.LABELS, 1.0, ("joined",), 48, seed=5)
    out = noise(short)
    assert len(out) < len(short)  # two to four chunks per text, and short ones fit one chunk
    assert chunk_entities(tokenizer, out) == chunk_entities(tokenizer, short)
    assert [D.LABELS[i] for c in out for i in c.labels if i > 0] == [D.LABELS[i] for c in short for i in c.labels
                                                                       if i > 0]


def test_traditional_keeps_every_length_and_tag(tokenizer, chunks):
    noise = NoiseAugmenter(tokenizer, D.LABELS, 1.0, ("traditional",), 48, seed=1)
    out = noise(chunks)
    assert [len(c.text) for c in out] == [len(c.text) for c in chunks]
    assert [c.tags for c in out] == [c.tags for c in chunks]
    assert [(k, len(m)) for c in out for k, m in mentions(c.text, c.tags)] == [
        (k, len(m)) for c in chunks for k, m in mentions(c.text, c.tags)]
    assert "張三" in "".join(c.text for c in out) and "清華大學" in "".join(c.text for c in out)
    assert [list(c.labels) for c in out] == [list(c.labels) for c in chunks]  # one CJK character, one word


def test_a_chunk_s_text_tokenises_into_the_chunk(tokenizer, chunks):
    """Noise re-tokenises a chunk's text alone: with nothing changed, that gives the chunk back."""
    again = D.make_chunks(D.encode_sentences(tokenizer, [(list(c.text), list(c.tags)) for c in chunks]), 48)
    assert len(again) == len(chunks)
    for a, b in zip(again, chunks):
        assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.word_pos, b.word_pos)
        assert np.array_equal(a.labels, b.labels)


def test_a_seed_gives_the_same_batches_and_another_seed_others(tokenizer, chunks):
    def run(seed):
        noise = NoiseAugmenter(tokenizer, D.LABELS, 0.5, ALL_KINDS, 48, seed)
        batches = [noise(chunks[k:k + 8]) for k in range(0, len(chunks), 8)]
        return [(c.text, c.input_ids.tolist(), c.labels.tolist()) for batch in batches for c in batch], noise.counts

    first, counts = run(13)
    assert first == run(13)[0]
    assert first != run(14)[0]
    assert set(counts) == set(ALL_KINDS)


def test_labels_come_out_in_the_model_s_scheme(tokenizer, chunks):
    """The same seed in BIO and in BIOES perturbs alike; the BIOES labels are the BIO ones rewritten."""
    bioes = D.scheme_labels("bioes")
    bio_out = NoiseAugmenter(tokenizer, D.LABELS, 0.7, ALL_KINDS, 48, seed=2)(chunks)
    bioes_out = NoiseAugmenter(tokenizer, bioes, 0.7, ALL_KINDS, 48, seed=2)(D.chunks_in_scheme(chunks, bioes))
    assert [c.text for c in bioes_out] == [c.text for c in bio_out]
    for a, b in zip(bioes_out, bio_out):
        assert list(a.labels) == list(D.bio_to_scheme(b.labels, bioes))
    assert any(bioes[i].startswith("S-") for c in bioes_out for i in c.labels)


def test_share_zero_changes_nothing_and_unknown_kinds_are_refused(tokenizer, chunks):
    assert NoiseAugmenter(tokenizer, D.LABELS, 0.0, ALL_KINDS, 48, seed=1)(chunks) is chunks
    with pytest.raises(ValueError):
        NoiseAugmenter(tokenizer, D.LABELS, 0.5, ("emoji", "typo"), 48, seed=1)


def test_noise_options_parse_and_pass_to_ensemble_members():
    from training.cli import NOISE_KINDS, parse_args
    from training.train import member_argv

    args = parse_args(["--noise-share", "0.3", "--noise-kinds", "emoji,joined", "--noise-split-entities", "0.5"])
    assert args.noise_share == 0.3 and args.noise_kinds == ("emoji", "joined") and args.noise_split_entities == 0.5
    assert parse_args([]).noise_share == 0 and parse_args([]).noise_kinds == NOISE_KINDS
    member = parse_args(member_argv(args, 14, Path("m"), 1, 10.0))
    assert member.noise_share == 0.3 and member.noise_kinds == ("emoji", "joined") and member.noise_split_entities == 0.5
    for bad in (["--noise-share", "1.5"], ["--noise-split-entities", "-0.1"], ["--noise-kinds", "emoji,typo"], ["--noise-kinds", ""]):
        with pytest.raises(SystemExit):
            parse_args(bad)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_teacher_s_word_emissions_follow_their_words_through_noise(tokenizer, chunks, kind):
    """Distillation (training/distill.py): a noisy word that starts at one of the clean words' first characters keeps
    that word's soft labels; inserted pieces get none. Each clean word's soft row here holds its own number."""
    numbered, n = [], 0
    for chunk in chunks:
        soft = np.zeros((len(chunk.word_pos), 3), np.float32)
        soft[:, 0] = np.arange(n, n + len(soft))
        numbered.append(D.Chunk(chunk.input_ids, chunk.word_pos, chunk.labels, chunk.text, chunk.tags,
                                chunk.word_chars, soft))
        n += len(soft)
    first_char = {int(row[0]): c.text[k] for c in numbered for row, k in zip(c.soft, c.word_chars)}
    out = NoiseAugmenter(tokenizer, D.LABELS, 1.0, (kind,), 48, seed=7)(numbered)
    kept, without = [], 0
    for chunk in out:
        assert chunk.soft is not None and chunk.soft.shape == (len(chunk.word_pos), 3)
        for row, k in zip(chunk.soft, chunk.word_chars):
            if np.isnan(row).any():
                without += 1
                continue
            kept.append(int(row[0]))
            if kind not in ("width", "traditional"):  # those two change characters one for one
                assert chunk.text[k] == first_char[int(row[0])]
    assert len(kept) == len(set(kept))  # one clean word, one noisy word at most
    assert len(kept) >= 0.9 * n  # a word is lost only where an inserted piece merges with it (Latin, digits)
    if kind in ("emoji", "rare", "latin"):  # pieces that make words of their own
        assert without > 0.1 * n
    soft, have = D.collate_soft(out[:8], 3)
    assert soft.shape[:2] == have.shape and have.sum() == sum((~np.isnan(c.soft).any(1)).sum() for c in out[:8])
    assert not np.isnan(soft).any()


def test_a_stand_in_target_fills_the_gold_o_words_the_teacher_never_saw(tokenizer, chunks):
    """``--inserted-target o``: the words of inserted pieces match a stand-in for the teacher's emissions; every word
    the teacher scored keeps its own, and padding stays without."""
    scored = [D.Chunk(c.input_ids, c.word_pos, c.labels, c.text, c.tags, c.word_chars,
                      np.full((len(c.word_pos), 3), 5.0, np.float32)) for c in chunks]
    out = NoiseAugmenter(tokenizer, D.LABELS, 1.0, ("emoji", "latin"), 48, seed=7)(scored)[:8]
    stand_in = np.array([9.0, -1.0, -2.0], np.float32)
    soft, have = D.collate_soft(out, 3, stand_in)
    plain, plain_have = D.collate_soft(out, 3)
    assert sum(np.isnan(c.soft).any(1).sum() for c in out) > 10
    for i, c in enumerate(out):
        n, unseen = len(c.word_pos), np.isnan(c.soft).any(1)
        assert (c.labels[unseen] == D.OUTSIDE_ID).all()
        assert have[i, :n].all() and not have[i, n:].any()
        assert (soft[i, :n][unseen] == stand_in).all() and (soft[i, :n][~unseen] == 5.0).all()
        assert (plain_have[i, :n] == ~unseen).all()
