"""Bad input gets a clear error or a correct answer, and the server keeps serving afterwards."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from texts import expected_entities
from triton_calls import client, infer, tensor, text_tensor

pytestmark = pytest.mark.server

PROTOCOLS = ["http", "grpc"]
GOOD = "张三在北京的清华大学读书。"


def url(served, protocol):
    return served.http_url if protocol == "http" else served.grpc_url


def still_serving(served, protocol):
    (entities,) = infer(served, protocol, [GOOD])
    assert [(e["type"], e["start"], e["end"]) for e in entities] == expected_entities(GOOD)


def rejected(served, protocol, inputs, model="ner") -> str:
    with pytest.raises(InferenceServerException) as info:
        client(protocol, url(served, protocol)).infer(model, inputs)
    return str(info.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalid_utf8_is_rejected_with_reason(served, protocol):
    message = rejected(served, protocol, [text_tensor(protocol, [b"\xff\xfe\xfa abc"])])
    assert "not valid UTF-8" in message
    still_serving(served, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nul_and_control_characters_keep_offsets(served, protocol):
    text = "\x00张三\x00\x01在\x1f北京\x7f"
    (entities,) = infer(served, protocol, [text])
    assert [(e["type"], e["start"], e["end"]) for e in entities] == expected_entities(text)
    assert all(e["span"] == text[e["start"] : e["end"]] for e in entities)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_text_over_the_limit_names_the_limit(served, protocol):
    limit = served.report["repository"]["window"]["max_text_chars"]
    message = rejected(served, protocol, [text_tensor(protocol, ["字" * (limit + 1)])])
    assert "max_text_chars" in message and str(limit) in message
    still_serving(served, protocol)


def test_text_at_the_limit_is_served(served):
    limit = served.report["repository"]["window"]["max_text_chars"]
    text = ("张三" + "的" * 98) * (limit // 100)
    (entities,) = infer(served, "grpc", [text])
    assert len(entities) == limit // 100
    assert all(e["span"] == "张三" for e in entities)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_input_name(served, protocol):
    message = rejected(served, protocol, [text_tensor(protocol, [GOOD], name="TEXTS")])
    assert "TEXTS" in message
    still_serving(served, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_dtype(served, protocol):
    message = rejected(served, protocol, [tensor(protocol, "TEXT", np.array([[7]], dtype=np.int32), "INT32")])
    assert "data-type" in message or "datatype" in message.lower()
    still_serving(served, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_shape(served, protocol):
    array = np.array([[GOOD.encode(), GOOD.encode()]], dtype=np.object_)  # [1, 2] where [batch, 1] is expected
    message = rejected(served, protocol, [tensor(protocol, "TEXT", array, "BYTES")])
    assert "shape" in message
    still_serving(served, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_batch_of_1000_texts_is_refused_by_the_batch_limit(served, protocol):
    message = rejected(served, protocol, [text_tensor(protocol, [GOOD] * 1000)])
    assert "batch" in message.lower() and str(served.report["repository"]["max_texts_per_request"]) in message
    still_serving(served, protocol)


def test_too_many_windows_in_one_request(served):
    limit = served.report["repository"]["window"]["max_text_chars"]
    message = rejected(served, "grpc", [text_tensor("grpc", ["字" * limit] * 8)])
    assert "max_rows_per_request" in message
    still_serving(served, "grpc")

