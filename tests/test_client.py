"""The Python SDK (client/, ``ner_client``) against a real tritonserver: sync and asyncio, gRPC and HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest
import tritonclient.grpc
import tritonclient.grpc.aio
import tritonclient.http
import tritonclient.http.aio

from export.model_hash import written_hash
from ner_client import (
    AsyncNerClient, Entity, InputRejected, ModelNotReady, NerClient, NerError, RequestTimeout, ServerUnavailable,
)
from serving.server import ServerConfig, TritonServer, free_port
from texts import AWKWARD_TEXTS, expected_entities

pytestmark = pytest.mark.server

PROTOCOLS = ["grpc", "http"]
GOOD = "张三在北京的清华大学读书。"
TRITON_CLIENTS = {
    ("grpc", False): tritonclient.grpc.InferenceServerClient,
    ("http", False): tritonclient.http.InferenceServerClient,
    ("grpc", True): tritonclient.grpc.aio.InferenceServerClient,
    ("http", True): tritonclient.http.aio.InferenceServerClient,
}


def url(server, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


def triples(entities) -> list[tuple]:
    return [(e["type"], e["start"], e["end"], e["span"]) if isinstance(e, dict) else (e.type, e.start, e.end, e.span)
            for e in entities]


def many_texts(n: int) -> list[str]:
    """Distinct texts of varied lengths, each with known entities."""
    return [f"第{i}条：" + "的" * (i % 9) + AWKWARD_TEXTS[i % len(AWKWARD_TEXTS)] + "了" * (i % 5) for i in range(n)]


def assert_matches_reference(served, texts, got, scores=True) -> None:
    want = served.reference(list(texts))
    assert len(got) == len(want)
    for text, entities, reference in zip(texts, got, want):
        assert all(isinstance(e, Entity) and e.span == text[e.start:e.end] for e in entities)
        assert triples(entities) == triples(reference), text
        if scores:  # FP32 on the server and in the reference: the scores agree too
            assert [e.score for e in entities] == pytest.approx([e["score"] for e in reference], abs=2e-4)


def assert_same(got, want) -> None:
    """The same entities; scores equal up to float noise (a request's padding and batch may differ)."""
    assert [triples(entities) for entities in got] == [triples(entities) for entities in want]
    assert [e.score for entities in got for e in entities] == pytest.approx(
        [e.score for entities in want for e in entities], abs=2e-4)


@contextmanager
def count_calls(monkeypatch, protocol: str, aio: bool, method: str = "infer"):
    """Counts calls of tritonclient's own client method (what the SDK tries), and the most at once in flight."""
    cls = TRITON_CLIENTS[(protocol, aio)]
    original = getattr(cls, method)
    seen = {"calls": 0, "in_flight": 0, "most_in_flight": 0}
    if aio:
        async def wrapper(self, *args, **kwargs):
            seen["calls"] += 1
            seen["in_flight"] += 1
            seen["most_in_flight"] = max(seen["most_in_flight"], seen["in_flight"])
            try:
                return await original(self, *args, **kwargs)
            finally:
                seen["in_flight"] -= 1
    else:
        def wrapper(self, *args, **kwargs):
            seen["calls"] += 1
            return original(self, *args, **kwargs)
    monkeypatch.setattr(cls, method, wrapper)
    yield seen
    monkeypatch.setattr(cls, method, original)


@contextmanager
def silent_listener():
    """A port that accepts connections (into the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"127.0.0.1:{s.getsockname()[1]}"


# -- answers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_extract_sync(served, protocol):
    with NerClient(url(served, protocol), protocol) as ner:
        assert ner.ready()
        for text in AWKWARD_TEXTS:
            entities = ner.extract(text)
            assert [(e.type, e.start, e.end) for e in entities] == expected_entities(text), text
            assert all(e.span == text[e.start:e.end] and 0.0 <= e.score <= 1.0 for e in entities)
        assert ner.extract("") == [] and ner.extract("   ") == []
        assert triples(ner.extract(GOOD.encode("utf-8"))) == triples(ner.extract(GOOD))  # bytes for raw use
    entity = entities[0]
    assert set(entity.to_dict()) == {"type", "start", "end", "span", "score"}
    assert Entity.from_dict(entity.to_dict()) == entity
    with pytest.raises(dataclasses.FrozenInstanceError):
        entity.start = 3  # type: ignore[misc]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_extract_async_with_many_requests_in_flight(served, protocol, monkeypatch):
    texts = AWKWARD_TEXTS * 3

    async def main():
        async with AsyncNerClient(url(served, protocol), protocol) as ner:
            assert await ner.ready()
            with count_calls(monkeypatch, protocol, aio=True) as seen:
                results = await asyncio.gather(*(ner.extract(text) for text in texts))
            return results, seen

    results, seen = asyncio.run(main())
    for text, entities in zip(texts, results):
        assert [(e.type, e.start, e.end) for e in entities] == expected_entities(text), text
    assert seen["calls"] == len(texts)
    assert seen["most_in_flight"] > 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_extract_many_sync_splits_requests_and_keeps_order(served, protocol):
    texts = many_texts(150)
    with NerClient(url(served, protocol), protocol, precision="fp32") as ner:
        limit = ner.model_info().max_texts_per_request
        assert len(texts) > limit
        sizes: list[int] = []
        got = ner.extract_many(texts, progress=sizes.append)
        assert len(sizes) >= -(-len(texts) // limit) and max(sizes) <= limit and sum(sizes) == len(texts)
        assert_matches_reference(served, texts, got)
        # smaller requests, by count and by characters, give the same answers in the same order
        sizes.clear()
        assert_same(ner.extract_many(texts, batch_size=7, progress=sizes.append), got)
        assert max(sizes) <= 7 and len(sizes) >= len(texts) // 7
        assert_same(ner.extract_many(iter(texts[:20])), got[:20])
        assert ner.extract_many([]) == []
    with NerClient(url(served, protocol), protocol, precision="fp32", max_chars_per_request=100) as ner:
        sizes.clear()
        assert_same(ner.extract_many(texts, progress=sizes.append), got)
        assert len(sizes) > len(texts) * 20 // 100


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_extract_many_async_runs_requests_concurrently_and_keeps_order(served, protocol, monkeypatch):
    texts = many_texts(150)

    async def main():
        async with AsyncNerClient(url(served, protocol), protocol, precision="fp32", concurrency=8) as ner:
            with count_calls(monkeypatch, protocol, aio=True) as seen:
                got = await ner.extract_many(texts, batch_size=10)
            return got, seen

    got, seen = asyncio.run(main())
    assert_matches_reference(served, texts, got)
    assert seen["calls"] == 15 and seen["most_in_flight"] > 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_info_and_selection_by_precision(served, protocol):
    labels = tuple(served.checkpoint.labels)
    for kwargs, name, precision in [({}, "ner", "int8"), ({"precision": "int8"}, "ner", "int8"),
                                    ({"precision": "fp32"}, "ner_fp32", "fp32"), ({"model": "ner_fp32"}, "ner_fp32",
                                                                                 "fp32")]:
        with NerClient(url(served, protocol), protocol, **kwargs) as ner:
            info = ner.model_info()
            assert ner.model == info.name == name and info.precision == precision
            assert info.version == "1" and info.model_hash == written_hash(served.repository, name)
            assert info.labels == labels and set(info.entity_types) == {"PER", "LOC", "ORG"}
            assert info.scheme == "BIO" and info.crf is True
            assert info.max_text_chars == served.report["repository"]["window"]["max_text_chars"]
            assert info.window_tokens == served.report["repository"]["window"]["window_tokens"]
            assert info.max_texts_per_request == served.report["repository"]["max_texts_per_request"]

    async def main():
        async with AsyncNerClient(url(served, protocol), protocol, precision="fp32") as ner:
            return await ner.model_info()

    info = asyncio.run(main())
    assert info.precision == "fp32" and info.version == "1"
    assert info.model_hash == written_hash(served.repository, "ner_fp32") != written_hash(served.repository, "ner")


def test_url_scheme_sets_the_protocol(served):
    assert NerClient(f"http://{served.http_url}").protocol == "http"
    assert NerClient(f"grpc://{served.grpc_url}").protocol == "grpc"
    assert NerClient(served.grpc_url).protocol == "grpc"
    with NerClient(f"http://{served.http_url}/") as ner:
        assert triples(ner.extract(GOOD)) == [("PER", 0, 2, "张三"), ("LOC", 3, 5, "北京"), ("ORG", 6, 10, "清华大学")]
    with pytest.raises(ValueError):
        NerClient(f"http://{served.http_url}", protocol="grpc")
    with pytest.raises(ValueError):
        NerClient(served.grpc_url, model="ner", precision="fp32")
    with pytest.raises(ValueError):
        NerClient(served.grpc_url, precision="fp16")
    with pytest.raises(TypeError):
        NerClient(served.grpc_url).extract(["a list"])  # type: ignore[arg-type]


# -- rejected input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalid_utf8_is_rejected_with_the_servers_reason(served, protocol):
    with NerClient(url(served, protocol), protocol) as ner:
        with pytest.raises(InputRejected) as info:
            ner.extract(b"\xff\xfe abc")
        assert "not valid UTF-8" in info.value.reason and info.value.index == 0
        # in a call of many texts, the error names the text's place in the call
        texts = many_texts(100)
        texts[77] = b"\xff\xfe abc"
        with pytest.raises(InputRejected) as info:
            ner.extract_many(texts)
        assert "not valid UTF-8" in info.value.reason and info.value.index == 77
        assert "text 77" in str(info.value)
        assert triples(ner.extract(GOOD))  # still serving


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_text_over_max_text_chars_is_rejected(served, protocol):
    async def main():
        async with AsyncNerClient(url(served, protocol), protocol) as ner:
            limit = (await ner.model_info()).max_text_chars
            with pytest.raises(InputRejected) as info:
                await ner.extract("字" * (limit + 1))
            assert "max_text_chars" in info.value.reason and str(limit) in info.value.reason
            with pytest.raises(InputRejected) as info:
                await ner.extract_many(["张三", "字" * (limit + 1), "李四"])
            assert info.value.index == 1
            assert triples(await ner.extract(GOOD))

    asyncio.run(main())


def test_text_that_is_not_unicode_is_rejected_before_sending(served):
    with NerClient(served.grpc_url) as ner:
        with pytest.raises(InputRejected) as info:
            ner.extract_many(["张三", "a\ud800b"])
        assert info.value.index == 1 and isinstance(info.value, ValueError)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_model_is_not_ready(served, protocol):
    with NerClient(url(served, protocol), protocol, model="no_such_model") as ner:
        assert not ner.ready()
        with pytest.raises(ModelNotReady):
            ner.extract(GOOD)


# -- unreachable servers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nothing_listening_raises_server_unavailable_after_bounded_tries(protocol, monkeypatch):
    address = f"127.0.0.1:{free_port()}"
    for retries in (1, 3):
        with NerClient(address, protocol, timeout=20, retries=retries, backoff=0.01) as ner:
            assert not ner.ready()
            with count_calls(monkeypatch, protocol, aio=False) as seen, pytest.raises(ServerUnavailable) as info:
                ner.extract(GOOD)
        assert seen["calls"] == info.value.attempts == retries
        assert isinstance(info.value, NerError) and isinstance(info.value, ConnectionError)

    # a back-off that would overrun the call's timeout is not waited for: the call gives up instead
    with NerClient(address, protocol, timeout=1.0, retries=5, backoff=30.0) as ner:
        with count_calls(monkeypatch, protocol, aio=False) as seen, pytest.raises(ServerUnavailable) as info:
            ner.extract(GOOD)
    assert seen["calls"] == info.value.attempts == 1

    async def main():
        async with AsyncNerClient(address, protocol, retries=3, backoff=0.01) as ner:
            assert not await ner.ready()
            # extract_many first asks for the model's limits: that call fails after the same bounded tries
            with count_calls(monkeypatch, protocol, aio=True, method="get_model_config") as seen, \
                    pytest.raises(ServerUnavailable) as info:
                await ner.extract_many([GOOD] * 3)
            return seen, info.value

    seen, error = asyncio.run(main())
    assert seen["calls"] == error.attempts == 3


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_never_answers_times_out(protocol):
    with silent_listener() as address:
        with NerClient(address, protocol, timeout=1.0) as ner:
            with pytest.raises(RequestTimeout) as info:
                ner.extract(GOOD)
            assert isinstance(info.value, TimeoutError) and info.value.timeout == 1.0
            assert not ner.ready()

        async def main():
            async with AsyncNerClient(address, protocol, timeout=1.0) as ner:
                with pytest.raises(RequestTimeout):
                    await ner.extract(GOOD)

        asyncio.run(main())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_other_protocols_port_is_named_as_such(served, protocol):
    """gRPC to Triton's HTTP port ("Socket closed" from gRPC) and HTTP to its gRPC port (an unparsable HTTP/2 frame):
    the error says which port it looks like, at once, without retries; the command line prints the same words."""
    other_port = served.http_url if protocol == "grpc" else served.grpc_url
    looks_like = "HTTP" if protocol == "grpc" else "gRPC"
    with NerClient(other_port, protocol, timeout=20, retries=3, backoff=0.01) as ner:
        assert not ner.ready()
        with pytest.raises(ServerUnavailable) as info:
            ner.extract(GOOD)
    assert f"this looks like Triton's {looks_like} port" in str(info.value), info.value
    assert info.value.attempts == 1

    async def main():
        async with AsyncNerClient(other_port, protocol, timeout=20, retries=3, backoff=0.01) as ner:
            with pytest.raises(ServerUnavailable) as info:
                await ner.extract_many([GOOD, "李四"])
            return info.value

    error = asyncio.run(main())
    assert f"this looks like Triton's {looks_like} port" in str(error), error
    assert error.attempts == 1

    environment = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
    cli = subprocess.run([sys.executable, "-m", "ner_client", "--url", f"{protocol}://{other_port}"],
                         input=GOOD.encode(), capture_output=True, env=environment, timeout=60)
    assert cli.returncode != 0
    assert f"this looks like Triton's {looks_like} port" in cli.stderr.decode(), cli.stderr.decode()


def test_a_stopped_server_raises_server_unavailable(served, tmp_path):
    """Clients connected to a server of their own that then stops (the shared server keeps running)."""
    server = TritonServer(ServerConfig(model_repository=served.repository, http_port=free_port(),
                                       grpc_port=free_port(), metrics_port=free_port(),
                                       log_file=tmp_path / "tritonserver.log"))
    server.start(timeout=300)
    clients = {protocol: NerClient(url(server, protocol), protocol, timeout=30, retries=3, backoff=0.01)
               for protocol in PROTOCOLS}
    loop = asyncio.new_event_loop()
    aio_clients = {protocol: AsyncNerClient(url(server, protocol), protocol, timeout=30, retries=3, backoff=0.01)
                   for protocol in PROTOCOLS}
    try:
        try:
            for protocol in PROTOCOLS:
                assert clients[protocol].ready()
                assert triples(clients[protocol].extract(GOOD))
                assert clients[protocol].extract_many([GOOD, "李四"])[1]
                assert triples(loop.run_until_complete(aio_clients[protocol].extract(GOOD)))
                assert loop.run_until_complete(aio_clients[protocol].extract_many([GOOD, "李四"]))[1]
        finally:
            server.stop()
        for protocol in PROTOCOLS:
            assert not clients[protocol].ready()
            with pytest.raises(ServerUnavailable) as info:
                clients[protocol].extract(GOOD)
            assert 1 <= info.value.attempts <= 3
            with pytest.raises(ServerUnavailable):
                clients[protocol].extract_many([GOOD, "李四"])
            assert not loop.run_until_complete(aio_clients[protocol].ready())
            with pytest.raises(ServerUnavailable) as info:
                loop.run_until_complete(aio_clients[protocol].extract(GOOD))
            assert 1 <= info.value.attempts <= 3
    finally:
        for protocol in PROTOCOLS:
            clients[protocol].close()
            loop.run_until_complete(aio_clients[protocol].close())
        loop.close()
