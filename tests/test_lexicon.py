"""The outside word lexicon of the default model (``--lexicon jieba``): tables built by ``training.lexicon``, matched
inside the graph by ``ner_model.lexicon.LexiconMatcher``, the same in torch and in ONNX Runtime (FP32 and INT8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ner_model.architecture import LacBiGruCrf
from ner_model.lexicon import LEXICON_TYPES, LexiconMatcher
from training.lexicon import build_tables, read_dictionary, word_ids

pytestmark = pytest.mark.unit

DICTIONARY = "\n".join([
    "北京 100 ns", "北京大学 30 nt", "张三 3 nr", "访问 50 v", "大学 80 n", "ABC公司 3 nt", "中 9 f", "一二三四五六七八九 3 m",
]) + "\n"


def _matcher(entries, buckets=1 << 10, max_len=8):
    tables = build_tables(entries, buckets)
    matcher = LexiconMatcher(buckets, max_len)
    tables.load_into(matcher)
    return matcher, tables


@pytest.fixture(scope="module")
def matcher(default_tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("lexicon") / "dict.txt"
    path.write_text(DICTIONARY, encoding="utf-8")
    codes = read_dictionary(path)
    words = list(codes)
    entries = [(ids, codes[w]) for w, ids in zip(words, word_ids(default_tokenizer, words, 8)) if ids is not None]
    # single characters, mixed Latin words and words longer than max_len are left out
    assert sorted(default_tokenizer.decode(ids).replace(" ", "") for ids, _ in entries) == ["北京", "北京大学", "大学", "张三", "访问"]
    return _matcher(entries)[0]


def _features(matcher, default_tokenizer, texts):
    enc = default_tokenizer(texts, padding=True, return_tensors="pt")
    return matcher(enc["input_ids"], enc["attention_mask"]), enc["attention_mask"]


def test_words_are_marked_where_they_begin_continue_and_end(matcher, default_tokenizer):
    feats, _ = _features(matcher, default_tokenizer, ["张三访问北京大学"])
    # [CLS] 张 三 访 问 北 京 大 学 [SEP]; columns: Begin, Middle, End × (PER, LOC, ORG, WORD)
    expected = np.zeros((10, 3, len(LEXICON_TYPES)))
    per, loc, org, word = range(4)
    begin, middle, end = range(3)
    expected[1, begin, per] = expected[2, end, per] = 1  # 张三
    expected[3, begin, word] = expected[4, end, word] = 1  # 访问
    expected[5, begin, loc] = expected[6, end, loc] = 1  # 北京
    expected[5, begin, org] = expected[6, middle, org] = expected[7, middle, org] = expected[8, end, org] = 1  # 北京大学
    expected[7, begin, word] = expected[8, end, word] = 1  # 大学
    np.testing.assert_allclose(feats[0].numpy(), np.log1p(expected.reshape(10, -1)), atol=1e-6)


def test_padding_and_short_inputs(matcher, default_tokenizer):
    texts = ["张三访问北京大学", "北京大", "中"]
    batched, mask = _features(matcher, default_tokenizer, texts)
    for i, text in enumerate(texts):
        alone, _ = _features(matcher, default_tokenizer, [text])
        n = int(mask[i].sum())
        torch.testing.assert_close(batched[i, :n], alone[0])
        assert float(batched[i, n:].abs().sum()) == 0.0  # nothing is found in the padding
    # 北京 is found in 北京大; 北京大学 is not (its last character is missing, the padding never completes a word)
    short = batched[1].numpy()
    assert short[1, 1] == pytest.approx(math.log(2)) and short[1, 2] == 0.0
    assert short[:, 4:8].sum() == 0.0  # no Middle of anything


def test_cuckoo_placement_finds_every_word():
    rng = np.random.default_rng(0)
    entries = [(rng.integers(200, 21000, size=int(rng.integers(2, 6))).tolist(), int(rng.integers(1, 16)))
               for _ in range(40)]
    matcher, tables = _matcher(entries, buckets=128, max_len=5)
    assert tables.words == 40 and tables.dropped == 0
    for ids, code in entries:
        feats = matcher(torch.tensor([[101] + ids + [102]]), torch.ones(1, len(ids) + 2, dtype=torch.long))
        bits = [(code >> k) & 1 for k in range(len(LEXICON_TYPES))]
        np.testing.assert_allclose(feats[0, 1, :4].numpy(), np.log1p(bits), atol=1e-6)


def test_features_equal_a_brute_force_count_over_every_ngram():
    """Random words planted in random rows, under masks with holes: every feature equals the count, by direct
    enumeration of all n-grams whose tokens are all real, of the words that begin / strictly contain / end there."""
    rng = np.random.default_rng(1)
    max_len = 5
    words = {tuple(rng.integers(1, 40, size=int(rng.integers(2, max_len + 1))).tolist()): int(rng.integers(1, 16))
             for _ in range(60)}
    matcher, tables = _matcher(list(words.items()), buckets=512, max_len=max_len)
    assert tables.dropped == 0
    batch, length = 6, 23
    ids = rng.integers(1, 40, size=(batch, length))
    for b in range(batch):  # plant words, overlapping at random
        for word in rng.choice(len(words), size=4):
            w = list(words)[word]
            at = int(rng.integers(0, length - len(w) + 1))
            ids[b, at:at + len(w)] = w
    mask = (rng.random((batch, length)) > 0.08).astype(np.int64)
    mask[0] = 1
    feats = matcher(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    expected = np.zeros((batch, length, 3, len(LEXICON_TYPES)))
    for b in range(batch):
        for start in range(length):
            for n in range(2, max_len + 1):
                span = range(start, start + n)
                if start + n > length or not all(mask[b, t] for t in span):
                    continue
                code = words.get(tuple(ids[b, start:start + n].tolist()))
                if code is None:
                    continue
                bits = [(code >> k) & 1 for k in range(len(LEXICON_TYPES))]
                expected[b, start, 0] += bits
                expected[b, start + n - 1, 2] += bits
                for t in span[1:-1]:
                    expected[b, t, 1] += bits
    assert expected.sum() > 20  # the planted words are found
    assert expected[:, :, 1].sum() > 0  # and some contain others' tokens
    np.testing.assert_allclose(feats, np.log1p(expected.reshape(batch, length, -1)), rtol=0, atol=1e-6)


def test_model_with_lexicon_exports_to_onnx_fp32_and_int8(matcher, default_tokenizer, tmp_path):
    """The tables are initialisers of the ONNX file; quantization leaves them (integers) alone."""
    from export.onnx_export import OnnxExportConfig, export_fp32, onnx_session, run_onnx
    from export.quantize import QuantizationConfig, quantize_int8

    torch.manual_seed(0)
    config = {"vocab_size": 21128, "embedding_dim": 16, "hidden_size": 8, "num_attention_layers": 1,
              "attention_heads": 2, "attention_ffn": 16, "num_labels": 7, "lexicon_buckets": matcher.buckets}
    model = LacBiGruCrf(config).eval()
    model.lexicon.load_state_dict(matcher.state_dict())
    with torch.no_grad():  # give the lexicon a say, so that a lost table would change the scores
        model.lexicon_in.weight.normal_()
        model.lexicon_out.weight.normal_()
    fp32 = export_fp32(model, tmp_path / "fp32.onnx", OnnxExportConfig())
    enc = default_tokenizer(["张三访问北京大学", "中", "北京"], padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", QuantizationConfig(),
                         calibration=[{"input_ids": ids, "attention_mask": mask}])
    with torch.no_grad():
        ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        codes = model.lexicon.codes.clone()
        model.lexicon.codes.zero_()
        blind = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        model.lexicon.codes.copy_(codes)
    got = run_onnx(onnx_session(fp32), ids, mask)
    assert np.abs(got - ref).max() <= 1e-4
    quantized = run_onnx(onnx_session(int8), ids, mask)
    assert np.abs(quantized - ref).max() < 0.2 * np.abs(blind - ref).max()
    import onnx

    inits = {t.name: t for t in onnx.load(str(int8)).graph.initializer}
    tables = [t for t in inits.values() if tuple(t.dims) == (matcher.buckets,)]
    assert sorted(onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in tables) == ["int32", "uint8"]
