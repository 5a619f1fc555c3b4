"""Bad input through every door: Triton's HTTP and gRPC endpoints, the client SDK and the web gateway.

tests/test_bad_input.py has the serving core's own cases (invalid UTF-8, NUL and control characters, over-limit text,
wrong tensor name, dtype and shape, a batch of 1000, too many windows) over HTTP and gRPC; tests/test_client.py and
tests/test_webui_gateway.py those of the SDK and the gateway. These are the rest: empty and whitespace-only texts,
1 MB of text, control characters and over-limit batches through the SDK and the gateway, invalid UTF-8 in a WebSocket
frame, malformed and oversize request bodies, Origin headers at Triton, unknown models. The bad-input table of docs/operations.md
names the test behind each answer.
"""

from __future__ import annotations

import asyncio
import http.client
import json

import grpc
import pytest
from tritonclient.utils import InferenceServerException

from ner_client import AsyncNerClient, InputRejected, NerClient
from test_webui_gateway import ask, connect, gateway, receive  # noqa: F401 (gateway is a fixture)
from texts import expected_entities
from triton_calls import MODULES, client, infer, text_tensor

pytestmark = pytest.mark.server

PROTOCOLS = ["http", "grpc"]
GOOD = "张三在北京的清华大学读书。"
EMPTY_AND_WHITESPACE = ["", " ", "   \t\n\r ", "\u3000\u00a0\u2003\u200b", "\n" * 1000]
CONTROL = "\x00张三\x00\x01在\x1f北京\x7f\x1b[31m联合国\x08"
ONE_MB = 1_000_000


def url(served, protocol: str) -> str:
    return served.http_url if protocol == "http" else served.grpc_url


def triples(entities) -> list[tuple]:
    return [(e["type"], e["start"], e["end"]) if isinstance(e, dict) else (e.type, e.start, e.end) for e in entities]


def still_serving(served) -> None:
    for protocol in PROTOCOLS:
        assert triples(infer(served, protocol, [GOOD])[0]) == expected_entities(GOOD)


def post(served, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, bytes]:
    host, port = served.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def infer_body(texts: list[str]) -> bytes:
    return json.dumps({"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [len(texts), 1],
                                   "data": texts}]}, ensure_ascii=False).encode()


# ----------------------------------------------------------------------------------------- empty and whitespace

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_and_whitespace_texts_get_no_entities_over_http_and_grpc(served, protocol):
    got = infer(served, protocol, EMPTY_AND_WHITESPACE + [GOOD])
    assert got[:-1] == [[] for _ in EMPTY_AND_WHITESPACE]
    assert triples(got[-1]) == expected_entities(GOOD)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_empty_and_whitespace_texts_through_the_sdk(served, protocol):
    with NerClient(url(served, protocol), protocol) as ner:
        for text in EMPTY_AND_WHITESPACE:
            assert ner.extract(text) == []
        got = ner.extract_many(EMPTY_AND_WHITESPACE + [GOOD])
        assert got[:-1] == [[] for _ in EMPTY_AND_WHITESPACE] and triples(got[-1]) == expected_entities(GOOD)
        assert ner.extract_many([]) == []


def test_empty_and_whitespace_texts_through_the_gateway(gateway):
    with connect(gateway.ws_url, origin=gateway.origin) as ws:
        receive(ws)
        for i, text in enumerate(EMPTY_AND_WHITESPACE):
            reply = ask(ws, i, text)
            assert reply["entities"] == [] and reply["model"] == "ner", reply


# ----------------------------------------------------------------------------------------- 1 MB of text

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_megabyte_of_text_is_refused_by_the_text_limit(served, protocol):
    limit = served.report["repository"]["window"]["max_text_chars"]
    for text in ("a" * ONE_MB, "字" * (ONE_MB // 3)):  # 1 MB of ASCII, 1 MB of UTF-8 CJK
        with pytest.raises(InferenceServerException) as info:
            client(protocol, url(served, protocol)).infer("ner", [text_tensor(protocol, [text])])
        assert "max_text_chars" in str(info.value) and str(len(text)) in str(info.value)
        assert info.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert limit < ONE_MB // 3
    still_serving(served)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_megabyte_of_text_through_the_sdk(served, protocol):
    async def main():
        async with AsyncNerClient(url(served, protocol), protocol) as ner:
            with pytest.raises(InputRejected) as info:
                await ner.extract("字" * (ONE_MB // 3))
            assert "max_text_chars" in info.value.reason and info.value.index == 0
            with pytest.raises(InputRejected) as info:
                await ner.extract_many([GOOD, "a" * ONE_MB, GOOD])
            assert info.value.index == 1 and "text 1" in str(info.value)
            assert triples(await ner.extract(GOOD)) == expected_entities(GOOD)

    asyncio.run(main())


def test_one_megabyte_of_text_through_the_gateway(gateway):
    with connect(gateway.ws_url, origin=gateway.origin, max_size=None) as ws:
        receive(ws)
        # 1 MB of text in a message under max_message_bytes (1 MiB): refused by the text limit.
        reply = ask(ws, 1, "a" * ONE_MB)
        assert reply["code"] == "too_long" and "max_text_chars" in reply["error"], reply
        # 1 MB of CJK is 3 MB of UTF-8: over max_message_bytes, refused unparsed (the id, first, is still read).
        reply = ask(ws, 2, "字" * ONE_MB)
        assert reply["code"] == "too_large" and "max_message_bytes" in reply["error"], reply
        assert triples(ask(ws, 3, GOOD)["entities"]) == expected_entities(GOOD)  # the connection stays


# ----------------------------------------------------------------------------------------- characters

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nul_and_control_characters_through_the_sdk(served, protocol):
    with NerClient(url(served, protocol), protocol) as ner:
        entities = ner.extract(CONTROL)
        assert triples(entities) == expected_entities(CONTROL)
        assert all(e.span == CONTROL[e.start:e.end] for e in entities)
        assert triples(ner.extract(CONTROL.encode())) == expected_entities(CONTROL)  # raw UTF-8 bytes too


def test_nul_and_control_characters_through_the_gateway(gateway):
    with connect(gateway.ws_url, origin=gateway.origin) as ws:
        receive(ws)
        reply = ask(ws, 1, CONTROL)
        assert triples(reply["entities"]) == expected_entities(CONTROL)
        assert all(e["span"] == CONTROL[e["start"]:e["end"]] for e in reply["entities"])


def test_invalid_utf8_in_a_websocket_text_frame_closes_that_connection_only(gateway):
    """A text frame must be UTF-8 (RFC 6455): the WebSocket layer closes the connection with 1007; the gateway and
    other connections are unaffected. (A lone surrogate escaped in JSON is refused with bad_request instead.)"""
    from websockets.exceptions import ConnectionClosed

    with connect(gateway.ws_url, origin=gateway.origin) as other:
        receive(other)
        with connect(gateway.ws_url, origin=gateway.origin) as ws:
            receive(ws)
            ws.send(b'{"id": 1, "text": "\xff\xfe\xfa"}', text=True)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
        assert triples(ask(other, 2, GOOD)["entities"]) == expected_entities(GOOD)


def test_the_sdk_sends_only_text(served):
    """Wrong tensor names, dtypes and shapes cannot be expressed through the SDK (it builds the TEXT tensor itself);
    what is not a text fails in the caller's process, before anything is sent."""
    with NerClient(served.grpc_url) as ner:
        for bad in (42, None, ["张三"], {"text": "张三"}, 3.5):
            with pytest.raises(TypeError):
                ner.extract(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ner.extract_many("张三在北京")  # a string is not a list of texts
        with pytest.raises(TypeError):
            ner.extract_many(["张三", 7])  # type: ignore[list-item]
        with pytest.raises(InputRejected) as info:
            ner.extract("a\ud800b")  # a lone surrogate is not encodable
        assert info.value.index == 0


# ----------------------------------------------------------------------------------------- batches

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_batches_over_the_limit_through_the_sdk(served, protocol, monkeypatch):
    """1,000 texts in one call (the server takes 64 per request): the SDK splits them and keeps the order; asked for
    bigger batches it still sends at most the server's limit."""
    texts = [f"第{i}条：" + ("张三在北京" if i % 3 else "欧阳娜娜去了乌鲁木齐") + "的" * (i % 7) for i in range(1000)]
    cls = MODULES[protocol].InferenceServerClient
    original, batches = cls.infer, []

    def counting(self, model_name, inputs, *args, **kwargs):
        batches.append(inputs[0].shape()[0])
        return original(self, model_name, inputs, *args, **kwargs)

    monkeypatch.setattr(cls, "infer", counting)
    with NerClient(url(served, protocol), protocol) as ner:
        got = ner.extract_many(texts, batch_size=1000)
    assert [triples(e) for e in got] == [expected_entities(t) for t in texts]
    assert sum(batches) == 1000 and max(batches) <= 64 and len(batches) >= 16


def test_too_many_windows_in_one_request_through_the_sdk(served):
    """Only with its character budget per request lifted can the SDK send more windows in one request than the server
    takes (max_rows_per_request): it gets the server's reason as InputRejected."""
    limit = served.report["repository"]["window"]["max_text_chars"]
    with NerClient(served.grpc_url, max_chars_per_request=10**8) as ner:
        with pytest.raises(InputRejected) as info:
            ner.extract_many(["字" * limit] * 8)
    assert "max_rows_per_request" in info.value.reason
    still_serving(served)


# ----------------------------------------------------------------------------------------- malformed and oversize

def test_malformed_request_bodies(served):
    status, _, body = post(served, "/v2/models/ner/infer", b"{not json")
    assert status in (400, 500) and b"failed to parse the request JSON" in body  # Triton answers 500 here
    status, _, body = post(served, "/v2/models/ner/infer", b'{"inputs": "TEXT"}')
    assert status in (400, 500) and b"Unable to parse 'inputs'" in body
    status, _, body = post(served, "/v2/models/ner/infer", b'{"inputs": []}')
    assert status == 400 and b"missing required input(s) ['TEXT']" in body
    # An empty body is read as one empty text (Triton's HTTP front end): one empty answer.
    status, _, body = post(served, "/v2/models/ner/infer", b"")
    assert status == 200 and body.endswith(b"[]")
    with pytest.raises(InferenceServerException) as info:
        client("grpc", served.grpc_url).infer("ner", [])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and "missing required input" in str(info.value)
    # gRPC: bytes that are not a ModelInferRequest.
    channel = grpc.insecure_channel(served.grpc_url)
    try:
        method = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            method(b"\xff\xff\xff\xff", timeout=30)
        assert info.value.code() == grpc.StatusCode.INTERNAL and "parse" in info.value.details()
    finally:
        channel.close()
    still_serving(served)


def test_oversize_http_body(served):
    """Triton sets no size limit on a request body: 32 MB of text is read, then refused by the text limit. (Put a body
    size limit in the proxy in front; the gateway has its own, max_message_bytes.)"""
    status, _, body = post(served, "/v2/models/ner/infer", infer_body(["a" * (32 * 1024 * 1024)]))
    assert status == 400 and b"max_text_chars" in body
    still_serving(served)


def test_unknown_model_over_http_and_grpc(served):
    status, _, body = post(served, "/v2/models/no_such_model/infer", infer_body([GOOD]))
    assert status == 404 and b"unknown model" in body.lower()
    with pytest.raises(InferenceServerException) as info:
        client("grpc", served.grpc_url).infer("encoder_int9", [text_tensor("grpc", [GOOD])])
    assert "unknown model" in str(info.value).lower() and info.value.status() == "StatusCode.NOT_FOUND"


# ----------------------------------------------------------------------------------------- Origin at Triton

def test_triton_gives_other_sites_no_cors_access(served):
    """Triton checks no Origin: a request from another site's page is answered like any other, but without CORS
    headers, so that page cannot read the answer; a preflight is refused. Triton's ports are for servers on a private
    network, not for browsers (the gateway checks Origin)."""
    status, headers, _ = post(served, "/v2/models/ner/infer", infer_body([GOOD]),
                              {"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert status == 200 and not any(k.startswith("access-control-") for k in headers)
    host, port = served.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("OPTIONS", "/v2/models/ner/infer",
                       headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    response = connection.getresponse()
    assert response.status >= 400 and response.getheader("Access-Control-Allow-Origin") is None
    connection.close()
