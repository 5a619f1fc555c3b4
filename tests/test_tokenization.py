"""The served tokenizer is bert-base-chinese's: ids are vocabulary line numbers, Chinese splits per character."""

from __future__ import annotations

from collections import Counter

import pytest

from ner_model.data import msra_file, vocab_file
from ner_pipeline import WindowConfig, encode_texts

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def tokenizer(served):
    return served.reference.tokenizer


@pytest.fixture(scope="module")
def vocab_lines():
    return vocab_file().read_text(encoding="utf-8").split("\n")


def test_known_characters_get_their_vocabulary_line_numbers(tokenizer, vocab_lines):
    counts = Counter(vocab_lines)
    chars = [c for c in "张三在北京的清华大学读书中国人民银行上海长江" if counts[c] == 1]
    encoding = tokenizer.encode("".join(chars), add_special_tokens=False)
    assert encoding.ids == [vocab_lines.index(c) for c in chars]
    assert tokenizer.token_to_id("[CLS]") == 101 and tokenizer.token_to_id("[SEP]") == 102
    assert tokenizer.get_vocab_size() >= 21000


def test_lowercasing_and_per_character_split(tokenizer, vocab_lines):
    encoding = tokenizer.encode("HELLO中国", add_special_tokens=False)
    assert encoding.tokens == ["hello", "中", "国"]
    assert encoding.ids[0] == vocab_lines.index("hello")


def test_special_tokens_typed_in_a_text_are_its_characters(tokenizer):
    """A user's "[SEP]" or "[PAD]" is text: it tokenizes as the characters it is, never as a special id."""
    specials = {tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    text = "张三[SEP]李四[PAD][CLS][MASK][UNK]"
    encoding = tokenizer.encode(text, add_special_tokens=False)
    assert encoding.tokens[:5] == ["张", "三", "[", "sep", "]"]
    assert not specials & set(encoding.ids)
    assert [text[a:b] for a, b in encoding.offsets][2:5] == ["[", "SEP", "]"]


def test_unknown_rate_on_msra_test_is_tiny(tokenizer):
    sentences, current = [], []
    for line in msra_file("test").read_text(encoding="utf-8").split("\n"):
        if line.strip():
            current.append(line.split("\t")[0])
        elif current:
            sentences.append("".join(current))
            current = []
    unk = tokenizer.token_to_id("[UNK]")
    unknown_chars = total_chars = 0
    for encoding in tokenizer.encode_batch(sentences, add_special_tokens=False):
        total_chars += sum(end - start for start, end in encoding.offsets)
        unknown_chars += sum(end - start for tid, (start, end) in zip(encoding.ids, encoding.offsets) if tid == unk)
    assert total_chars > 150_000
    assert unknown_chars / total_chars < 0.001


def test_rows_are_padded_only_to_a_bucket(tokenizer):
    cfg = WindowConfig()
    batch = encode_texts(tokenizer, ["张三" * 10], cfg)
    assert batch.input_ids.shape == (1, 32)  # 20 tokens + [CLS] + [SEP] fits the 32 bucket
    assert batch.input_ids[0, 0] == 101 and batch.input_ids[0, 21] == 102 and batch.input_ids[0, 22:].sum() == 0
