"""Each request to a Python-backend model is checked on its own: a bad request sent straight to `tokenizer`,
`encoder_int8`, `encoder_fp32`, `decoder` or `text_encoder_int8` (the fused form's tokenizer and encoder) gets an
error naming its problem, while good ensemble requests sharing the
same model executions are answered correctly, and the server serves on afterwards. The encoder's checks
(ner_pipeline.validation) are also run directly; the decoder's are in test_decoder_requests.py."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from ner_pipeline.validation import EncoderInputs, InputRejected, embedding_rows
from texts import AWKWARD_TEXTS, expected_entities, long_text_with_boundary_entities
from triton_calls import client, infer, tensor, text_tensor

VOCAB = 21128  # the tiny BERT's embedding rows (export.synthetic)
CONCURRENCY = 16
ROUNDS = 4  # each round sends every bad request once, between good ones
GOOD_TEXTS = AWKWARD_TEXTS + [long_text_with_boundary_entities(1200)]


def ids_and_mask(ids, mask=None, ids_type="INT64"):
    ids = np.asarray(ids)
    mask = np.ones(ids.shape, dtype=np.int64) if mask is None else np.asarray(mask, dtype=np.int64)
    return [tensor("grpc", "input_ids", ids, ids_type), tensor("grpc", "attention_mask", mask, "INT64")]


def row(*middle):
    return [101, *middle, 102, 0, 0]


def decoder_inputs(tensors: dict):
    types = {"logits": "FP32", "word_spans": "INT32", "text_index": "INT32", "source_text": "BYTES"}
    return [tensor("grpc", name, tensors[name], types[name]) for name in types]


@pytest.fixture(scope="module")
def direct(served):
    """Each model's inputs and its answer, alone, for two texts: what the ensemble passes from step to step."""
    c = client("grpc", served.grpc_url)
    texts = [text_tensor("grpc", ["张三在北京", "联合国"])]
    tokens = c.infer("tokenizer", texts)
    encoder = ids_and_mask(tokens.as_numpy("input_ids"), tokens.as_numpy("attention_mask"))
    decoder = {name: tokens.as_numpy(name) for name in ("word_spans", "text_index", "source_text")}
    answers = {"tokenizer": tokens.as_numpy("word_spans")}
    for model in ("encoder_int8", "encoder_fp32"):
        answers[model] = c.infer(model, encoder).as_numpy("logits")
    decoder["logits"] = answers["encoder_int8"]
    answers["decoder"] = c.infer("decoder", decoder_inputs(decoder)).as_numpy("ENTITIES")
    assert [json.loads(row[0]) for row in answers["decoder"]][1][0]["span"] == "联合国"
    # The fused form's first step answers what the tokenizer and the encoder answer one after the other.
    fused = c.infer("text_encoder_int8", texts)
    for name in ("word_spans", "text_index", "source_text"):
        assert np.array_equal(fused.as_numpy(name), tokens.as_numpy(name)), name
    answers["text_encoder_int8"] = fused.as_numpy("logits")
    assert np.allclose(answers["text_encoder_int8"], answers["encoder_int8"], atol=1e-5)
    return {"tokenizer": texts, "encoder_int8": encoder, "encoder_fp32": encoder,
            "decoder": decoder_inputs(decoder), "text_encoder_int8": texts}, decoder, answers


def changed(tensors: dict, **changes) -> dict:
    out = {name: value.copy() for name, value in tensors.items()}
    for name, change in changes.items():
        out[name] = change(out[name])
    return out


def at(index, value):
    def change(array):
        array[index] = value
        return array
    return change


def bad_requests(good: dict) -> list[tuple[str, list, tuple[str, ...]]]:
    """(model, inputs, words every one of which the error message must hold), from the decoder's good inputs."""
    scored = tuple(int(i) for i in np.argwhere(good["word_spans"][0, :, 0] >= 0)[0])  # a scored position of row 0
    encoder = []
    for model in ("encoder_int8", "encoder_fp32"):
        encoder += [
            (model, ids_and_mask([row(2000, VOCAB)]), ("input_ids", str(VOCAB), "vocabulary")),
            (model, ids_and_mask([row(2000, 3000)] * 2 + [row(-1, 3000)]), ("input_ids", "-1", "vocabulary")),
            (model, ids_and_mask([row(2 ** 40)]), ("input_ids", str(2 ** 40), "vocabulary")),
            (model, ids_and_mask(np.full((1, 8), 101), np.ones((1, 6), np.int64)), ("input_ids", "attention_mask",
                                                                                     "shape")),
            (model, ids_and_mask(np.full((2, 8), 101), np.ones((1, 8), np.int64)), ("input_ids", "batch size")),
            (model, ids_and_mask(np.full((1, 8), 101, np.int32), ids_type="INT32"), ("input_ids", "INT32")),
            # wider than the tiny BERT's 512 positions, which ONNX Runtime cannot run
            (model, ids_and_mask(np.full((2, 600), 101)), ("input_ids", "600")),
            (model, ids_and_mask([row(2000)], [[1, 1, 2, 0, 0]]), ("attention_mask", "2", "0 or 1")),
            (model, ids_and_mask([row(2000)], [[1, -1, 1, 0, 0]]), ("attention_mask", "-1", "0 or 1")),
        ]
    tokenizer = [
        ("tokenizer", [text_tensor("grpc", ["张三", b"\xff\xfe abc"])], ("text 1", "UTF-8")),
        ("tokenizer", [tensor("grpc", "TEXT", np.array([[7]], np.int32), "INT32")], ("TEXT", "INT32")),
        ("tokenizer", [tensor("grpc", "TEXT", np.array([[b"a", b"b"]], np.object_), "BYTES")], ("TEXT", "shape")),
    ]
    decoder = [
        ("decoder", decoder_inputs(changed(good, logits=lambda x: x[:, :, :-1])), ("logits", "shape")),
        ("decoder", decoder_inputs(changed(good, logits=at((0, 1, 0), np.nan))), ("logits", "nan", "finite")),
        ("decoder", decoder_inputs(changed(good, word_spans=lambda x: x[:, :-1])), ("word_spans", "logits")),
        ("decoder", decoder_inputs(changed(good, word_spans=at((0,) + scored + (1,), 99))), ("word_spans", "99",
                                                                                            "code points")),
        ("decoder", decoder_inputs(changed(good, word_spans=at((0, 0), (-2, 3)))), ("word_spans", "-2")),
        ("decoder", decoder_inputs(changed(good, text_index=lambda x: x * 2)), ("text_index", "text 1")),
        ("decoder", decoder_inputs(changed(good, text_index=at((1, 0), -1))), ("text_index", "-1")),
        ("decoder", decoder_inputs(changed(good, source_text=at((0, 0), b"\xc3\x28"))), ("source_text", "UTF-8")),
        ("decoder", decoder_inputs(changed(good, text_index=lambda x: x[:1])), ("text_index",)),
    ]
    # The fused form's text encoder refuses what the tokenizer refuses.
    text_encoder = [("text_encoder_int8", inputs, words) for _, inputs, words in tokenizer]
    return encoder + tokenizer + decoder + text_encoder


OUTPUT = {"tokenizer": "word_spans", "encoder_int8": "logits", "encoder_fp32": "logits", "decoder": "ENTITIES",
          "text_encoder_int8": "logits"}


@pytest.mark.server
def test_bad_requests_to_each_model_fail_alone_among_good_ones(served, direct):
    inputs, decoder_tensors, answers = direct
    bad = bad_requests(decoder_tensors)
    ensemble = [(model, text, protocol) for text in GOOD_TEXTS for model in ("ner", "ner_fp32")
                for protocol in ("grpc", "http")]
    # Each bad request between a good ensemble request and a good request to the same model, so that each model's
    # executions mix them.
    work = [call for k, (model, *wrong) in enumerate(bad * ROUNDS)
            for call in (ensemble[k % len(ensemble)], (model, inputs[model], None), (model, *wrong))]
    c = client("grpc", served.grpc_url)
    models = ("tokenizer", "encoder_int8", "encoder_fp32", "decoder", "text_encoder_int8")
    before = {model: c.get_inference_statistics(model).model_stats[0] for model in models}

    def call(item):
        if isinstance(item[1], str):
            model, text, protocol = item
            return item, infer(served, protocol, [text], model)
        try:
            return item, client("grpc", served.grpc_url).infer(item[0], item[1]).as_numpy(OUTPUT[item[0]])
        except InferenceServerException as err:
            return item, err

    def batched(model, after) -> bool:
        answered = after[model].inference_stats.success.count - before[model].inference_stats.success.count
        return 0 < after[model].execution_count - before[model].execution_count < answered

    # The tokenizer batches only what queues while it is busy (no queue delay): on a quiet machine one pass may
    # never overlap two of its requests, so the load is sent again (at most 3 passes) until every model batched.
    results = []
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for _ in range(3):
            results += pool.map(call, work)
            after = {model: c.get_inference_statistics(model).model_stats[0] for model in models}
            if all(batched(model, after) for model in models):
                break

    wrong = []
    for item, answer in results:
        if isinstance(item[1], str):  # an ensemble request
            model, text, _ = item
            if [(e["type"], e["start"], e["end"]) for e in answer[0]] != expected_entities(text):
                wrong.append((model, text, answer))
        elif item[2] is None:  # a good request to one model: the answer it gets alone
            expected = answers[item[0]]
            if isinstance(answer, Exception) or answer.shape != expected.shape or not (
                    np.array_equal(answer, expected) if answer.dtype == np.object_
                    else np.allclose(answer, expected, atol=1e-4)):
                wrong.append((item[0], "good", answer))
        elif not (isinstance(answer, InferenceServerException)
                  and all(word.lower() in str(answer).lower() for word in item[2])):
            wrong.append((item[0], item[2], answer))
    assert not wrong
    for model in models:  # fewer executions than answered requests: each model did run requests together
        assert batched(model, after), (model, after[model].execution_count - before[model].execution_count)
    (entities,) = infer(served, "grpc", [GOOD_TEXTS[0]])
    assert [(e["type"], e["start"], e["end"]) for e in entities] == expected_entities(GOOD_TEXTS[0])


def embedding_graph(path, table_rows: int, quantized: bool) -> str:
    """input_ids → Cast → Gather from a [table_rows, 4] table (or its DequantizeLinear) → logits, as an ONNX file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.INT64)]
    if quantized:
        table = numpy_helper.from_array(np.zeros((table_rows, 4), np.int8), "table_quantized")
        extra = [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
                 numpy_helper.from_array(np.array(0, np.int8), "zero")]
        nodes.append(helper.make_node("DequantizeLinear", ["table_quantized", "scale", "zero"], ["table"]))
    else:
        table, extra = numpy_helper.from_array(np.zeros((table_rows, 4), np.float32), "table"), []
    nodes.append(helper.make_node("Gather", ["table", "ids"], ["logits"]))
    positions = numpy_helper.from_array(np.zeros((512, 4), np.float32), "positions")  # not indexed by the ids
    nodes.append(helper.make_node("Gather", ["positions", "attention_mask"], ["unused"]))
    graph = helper.make_graph(
        nodes, "embedding",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
         for name in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", 4]),
         helper.make_tensor_value_info("unused", TensorProto.FLOAT, ["batch", "sequence", 4])],
        [table, positions, *extra])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


@pytest.mark.unit
@pytest.mark.parametrize("quantized", [False, True])
def test_the_vocabulary_is_the_table_the_ids_index(tmp_path, quantized):
    assert embedding_rows(embedding_graph(tmp_path / "model.onnx", 300, quantized)) == 300


def rejection(inputs: EncoderInputs, ids, mask=None) -> str:
    ids = np.asarray(ids, dtype=np.int64)
    with pytest.raises(InputRejected) as info:
        inputs.check(ids, np.ones_like(ids) if mask is None else np.asarray(mask, dtype=np.int64))
    return str(info.value)


@pytest.mark.unit
def test_encoder_checks_name_the_input_and_the_value():
    inputs = EncoderInputs(vocab_size=300, max_width=8)
    inputs.check(np.array([row(5, 299)]), np.array([[1, 1, 1, 1, 0, 0]]))  # a good request passes
    assert rejection(inputs, [row(5, 300)]) == "input_ids holds 300 at [0, 2], outside the vocabulary [0, 300)"
    assert rejection(inputs, [row(5), row(-7)]) == "input_ids holds -7 at [1, 1], outside the vocabulary [0, 300)"
    assert "input_ids holds -9223372036854775808" in rejection(inputs, [row(-2 ** 63)])
    assert rejection(inputs, [row(5)], [[1, 1, 3, 0, 0]]) == ("attention_mask holds 3 at [0, 2]; its values must "
                                                             "be 0 or 1")
    assert "attention_mask holds -1" in rejection(inputs, [row(5)], [[1, -1, 1, 0, 0]])
    assert rejection(inputs, [row(5)], [[1, 1, 1, 0]]) == ("input_ids [1, 5] and attention_mask [1, 4] must share "
                                                           "one 2-D shape")
    assert rejection(inputs, [range(9)]) == "input_ids has 9 positions per row, over the longest window 8"
    with pytest.raises(InputRejected, match="must be int64"):
        inputs.check(np.zeros((1, 4), np.int32), np.ones((1, 4), np.int64))
    EncoderInputs().check(np.array([[10 ** 9] * 100]), np.ones((1, 100), np.int64))  # no limits known: no limits
