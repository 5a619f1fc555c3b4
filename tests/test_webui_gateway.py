"""The web UI's gateway (python -m webui) against a real tritonserver: the page and /healthz, the /ws protocol (answers,
ids, errors, the model hash of every answer), oversize and malformed messages, the Origin and Host checks, many
connections at once, cancelled requests, and a Triton restart on a re-exported repository while a WebSocket stays
open."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from export.model_hash import written_hash
from serving.processes import stop
from serving.server import ServerConfig, TritonServer, free_port, tail
from test_export_output import rewrite
from texts import AWKWARD_TEXTS, expected_entities
from triton_calls import infer

import websockets  # noqa: F401  (requirements/webui.txt)
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunningGateway:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def origin(self) -> str:
        return self.url

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def http_get(url: str, headers: dict | None = None, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@contextlib.contextmanager
def running_gateway(triton_url: str, log: Path, *args: str, port: int | None = None, env: dict | None = None):
    """Starts `python -m webui` on a free loopback port; the port and Triton's address go by environment variable,
    the rest by flags, so that both ways are used."""
    port = port or free_port()
    environment = {**os.environ, "NER_WEBUI_PORT": str(port), "NER_TRITON_URL": triton_url, **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "webui", "--health-interval", "0.5", *args], cwd=REPO_ROOT,
                                   stdout=out, stderr=subprocess.STDOUT, env=environment)
    gateway = RunningGateway(port, process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited with code {process.returncode}:\n{tail(log)}")
            try:
                http_get(gateway.url + "/healthz", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the gateway did not start:\n{tail(log)}") from None
                time.sleep(0.2)
        yield gateway
    finally:
        stop(process, 15)


def wait_healthy(gateway: RunningGateway, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = http_get(gateway.url + "/healthz")
        if status == 200:
            return json.loads(body)
        if time.monotonic() > deadline:
            raise TimeoutError(f"/healthz still says {status} {body!r}:\n{tail(gateway.log)}")
        time.sleep(0.3)


def receive(ws, timeout: float = 120.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def reply_to(ws, request_id, timeout: float = 120.0) -> dict:
    """The next message for `request_id`, skipping status messages (and answers to other ids)."""
    deadline = time.monotonic() + timeout
    while True:
        message = receive(ws, max(0.1, deadline - time.monotonic()))
        if "type" not in message and message.get("id") == request_id:
            return message


def next_reply(ws, timeout: float = 120.0) -> dict:
    while True:
        message = receive(ws, timeout)
        if "type" not in message:
            return message


def ask(ws, request_id, text: str, model: str | None = "ner", timeout: float = 120.0) -> dict:
    message = {"id": request_id, "text": text}
    if model is not None:
        message["model"] = model
    ws.send(json.dumps(message, ensure_ascii=False))
    return reply_to(ws, request_id, timeout)


def triples(entities: list[dict]) -> list[tuple[str, int, int]]:
    return [(e["type"], e["start"], e["end"]) for e in entities]


def ensemble_types(served, model: str) -> list[str]:
    _, _, body = http_get(f"http://{served.http_url}/v2/models/{model}/config")
    value = json.loads(body)["parameters"]["entity_types"]["string_value"]
    return [t for t in value.split(",") if t]


@pytest.fixture(scope="module")
def gateway(served, tmp_path_factory):
    log = tmp_path_factory.mktemp("webui") / "gateway.log"
    with running_gateway(served.grpc_url, log) as gw:
        wait_healthy(gw)
        yield gw


@pytest.fixture(scope="module")
def strict_gateway(served, tmp_path_factory):
    """Small limits, an Origin allow-list, and Triton over HTTP."""
    log = tmp_path_factory.mktemp("webui-strict") / "gateway.log"
    with running_gateway(served.http_url, log, "--triton-protocol", "http", "--max-text-chars", "50",
                         "--max-message-bytes", "2000", "--max-connections", "3", "--max-pending", "2",
                         env={"NER_WEBUI_ALLOWED_ORIGINS": "https://ner.example.com"}) as gw:
        wait_healthy(gw)
        yield gw


# --------------------------------------------------------------------------------------------------- HTTP side

@pytest.mark.server
def test_serves_the_page_and_nothing_else(gateway):
    status, headers, body = http_get(gateway.url + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'src="app.js"' in body and b'href="style.css"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    for asset, kind in (("/app.js", "javascript"), ("/style.css", "text/css")):
        status, headers, _ = http_get(gateway.url + asset)
        assert status == 200 and kind in headers["content-type"], asset
    for path in ("/gateway.py", "/../gateway.py", "/%2e%2e/gateway.py", "/static/../__main__.py", "/docs",
                 "/openapi.json", "/v2/models/ner", "/ws/x", "/.env"):
        status, _, body = http_get(gateway.url + path)
        assert status == 404, (path, status, body[:200])
    # The WebSocket path is not an HTTP page.
    status, _, _ = http_get(gateway.url + "/ws")
    assert status in (400, 404, 426)


@pytest.mark.server
def test_healthz_reports_triton_ready(served, gateway):
    status, headers, body = http_get(gateway.url + "/healthz")
    assert status == 200 and headers["content-type"] == "application/json"
    health = json.loads(body)
    assert health["triton_ready"] is True
    assert health["models"]["ner"] == {"ready": True, "precision": "int8",
                                       "model_hash": written_hash(served.repository, "ner")}
    assert health["models"]["ner_fp32"] == {"ready": True, "precision": "fp32",
                                            "model_hash": written_hash(served.repository, "ner_fp32")}


@pytest.mark.server
def test_foreign_host_header_refused(gateway):
    """A page on another name rebound to 127.0.0.1 (DNS rebinding) carries its own Host: refused."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    conn.request("GET", "/", headers={"Host": f"evil.example:{gateway.port}"})
    assert conn.getresponse().status == 400
    conn.close()
    assert http_get(f"http://localhost:{gateway.port}/")[0] == 200


# --------------------------------------------------------------------------------------------------- /ws protocol

@pytest.mark.server
def test_hello_lists_the_served_models_and_limits(served, gateway):
    with connect(gateway.ws_url, origin=gateway.origin) as ws:
        hello = receive(ws)
    assert hello["type"] == "hello" and hello["triton_ready"] is True and hello["default_model"] == "ner"
    models = {m["name"]: m for m in hello["models"]}
    assert set(models) == {"ner", "ner_fp32"}
    assert models["ner"]["precision"] == "int8" and models["ner_fp32"]["precision"] == "fp32"
    for name in models:  # the types the page shows come from the served model
        assert models[name]["entity_types"] == ensemble_types(served, name)
        assert models[name]["ready"] is True
        assert models[name]["model_hash"] == written_hash(served.repository, name)
    assert hello["limits"] == {"max_message_bytes": 1024 * 1024, "max_text_chars": 100_000, "max_pending": 8}


@pytest.mark.parametrize("model,served_as", [("ner", "ner"), ("ner_fp32", "ner_fp32"), ("int8", "ner"),
                                             ("fp32", "ner_fp32"), (None, "ner")])
@pytest.mark.server
def test_answers_equal_the_servers(served, gateway, model, served_as):
    texts = AWKWARD_TEXTS + ["   \t\n "]
    direct = infer(served, "http", texts, served_as)
    model_hash = written_hash(served.repository, served_as)
    with connect(gateway.ws_url, origin=gateway.origin) as ws:
        for i, (text, want) in enumerate(zip(texts, direct)):
            reply = ask(ws, f"req-{i}", text, model)
            assert set(reply) == {"id", "entities", "latency_ms", "model", "model_hash"}, reply
            assert reply["id"] == f"req-{i}" and reply["model"] == served_as and reply["model_hash"] == model_hash
            assert isinstance(reply["latency_ms"], (int, float)) and reply["latency_ms"] >= 0
            assert triples(reply["entities"]) == triples(want) == expected_entities(text), text
            assert [e["span"] for e in reply["entities"]] == [e["span"] for e in want]
            # INT8 activations are quantized per request (dynamic quantization): a batch of other texts may move a
            # score in its last digits.
            assert [e["score"] for e in reply["entities"]] == pytest.approx([e["score"] for e in want], abs=2e-3)
        assert ask(ws, 0, "", model) == {"id": 0, "entities": [], "latency_ms": 0.0, "model": served_as,
                                         "model_hash": model_hash}


@pytest.mark.server
def test_pipelined_requests_each_answered_once_under_its_id(gateway):
    texts = [f"第{i}个：张三在北京。" if i % 2 else f"{i}号李四去了上海的联合国" for i in range(6)]
    ids = [7, "seven", 7.5, -3, "😀", "x" * 128]
    with connect(gateway.ws_url, origin=gateway.origin) as ws:
        receive(ws)  # hello
        for request_id, text in zip(ids, texts):
            ws.send(json.dumps({"id": request_id, "text": text, "model": "ner"}, ensure_ascii=False))
        answers = [next_reply(ws) for _ in ids]
    by_id = {json.dumps(a["id"]): a for a in answers}
    assert len(by_id) == len(ids)
    for request_id, text in zip(ids, texts):
        assert triples(by_id[json.dumps(request_id)]["entities"]) == expected_entities(text)


@pytest.mark.server
def test_bad_messages_get_errors_and_the_connection_stays(gateway):
    cases = [
        ("{not json", None, "bad_json"),
        ('{"id": 1, "text": "张三"', None, "bad_json"),
        ("[1, 2]", None, "bad_request"),
        ('"just a string"', None, "bad_request"),
        (json.dumps({"text": "张三"}), None, "bad_request"),                    # no id
        (json.dumps({"id": {"a": 1}, "text": "张三"}), None, "bad_request"),    # id of the wrong kind
        (json.dumps({"id": True, "text": "张三"}), None, "bad_request"),
        (json.dumps({"id": "y" * 129, "text": "张三"}), None, "bad_request"),
        (json.dumps({"id": 2}), 2, "bad_request"),                               # no text
        (json.dumps({"id": 3, "text": 42}), 3, "bad_request"),
        (json.dumps({"id": 4, "text": "张三", "model": "encoder_int8"}), 4, "unknown_model"),
        (json.dumps({"id": 5, "text": "张三", "model": 8}), 5, "bad_request"),
        ('{"id": 6, "text": "\\ud800张三"}', 6, "bad_request"),               # a lone surrogate
        ("[" * 100_000 + "]" * 100_000, None, "bad_json"),                      # nesting too deep
    ]
    with connect(gateway.ws_url, origin=gateway.origin) as ws:
        receive(ws)
        for raw, request_id, code in cases:
            ws.send(raw)
            reply = next_reply(ws)
            assert set(reply) == {"id", "error", "code"}, (raw[:80], reply)
            assert reply["id"] == request_id and reply["code"] == code, (raw[:80], reply)
            assert reply["error"]
        ws.send(b'{"id": 9, "text": "binary"}')
        assert next_reply(ws)["code"] == "bad_request"
        unknown = ask(ws, 10, "张三", "bf16")
        assert "ner" in unknown["error"] and "ner_fp32" in unknown["error"]
        # ... and the same connection still answers.
        assert triples(ask(ws, 11, "张三在北京")["entities"]) == [("PER", 0, 2), ("LOC", 3, 5)]


@pytest.mark.server
def test_limits_oversize_and_long_texts(strict_gateway):
    with connect(strict_gateway.ws_url, origin=strict_gateway.origin) as ws:
        hello = receive(ws)
        assert hello["limits"] == {"max_message_bytes": 2000, "max_text_chars": 50, "max_pending": 2}
        # Over max_message_bytes: an error naming the limit (with the id, which comes first), connection kept.
        big = json.dumps({"id": 77, "text": "张三" * 2000, "model": "ner"}, ensure_ascii=False)
        ws.send(big)
        reply = next_reply(ws)
        assert reply["id"] == 77 and reply["code"] == "too_large" and "max_message_bytes" in reply["error"]
        ws.send(json.dumps({"text": "x" * 3000, "id": 78}))  # id not first: not found
        reply = next_reply(ws)
        assert reply["id"] is None and reply["code"] == "too_large"
        # Over max_text_chars (counted in code points: 50 emoji are 100 UTF-16 units and pass).
        reply = ask(ws, 79, "北" * 51)
        assert reply["code"] == "too_long" and "50" in reply["error"] and "max_text_chars" in reply["error"]
        assert ask(ws, 80, "😀" * 48 + "张三")["entities"][0]["start"] == 48
        # Over the WebSocket frame cap the transport closes the connection (1009); below it, never.
        assert triples(ask(ws, 81, "李四在上海")["entities"]) == [("PER", 0, 2), ("LOC", 3, 5)]


@pytest.mark.server
def test_pending_requests_per_connection_are_bounded(strict_gateway):
    """Six requests sent at once, two allowed in flight: the frames reach the gateway long before Triton answers the
    first (distinct texts: none comes from the response cache), so some are refused."""
    with connect(strict_gateway.ws_url, origin=strict_gateway.origin) as ws:
        receive(ws)
        for i in range(6):
            ws.send(json.dumps({"id": i, "text": f"张三在北京{i}", "model": "ner"}))
        replies = [next_reply(ws) for _ in range(6)]
    assert sorted(r["id"] for r in replies) == list(range(6))
    busy = [r for r in replies if r.get("code") == "busy"]
    answered = [r for r in replies if "entities" in r]
    assert len(answered) >= 2 and len(busy) + len(answered) == 6
    assert busy and all("max_pending" in r["error"] for r in busy)


@pytest.mark.server
def test_hostile_origin_refused(gateway, strict_gateway):
    for origin in ("http://evil.example", f"http://evil.example:{gateway.port}", "null", "file://",
                   f"http://127.0.0.1:{gateway.port + 1}", f"https://127.0.0.1:{gateway.port}.evil.example"):
        with pytest.raises(InvalidStatus) as refused:
            connect(gateway.ws_url, origin=origin, open_timeout=30)
        assert refused.value.response.status_code == 403, origin
    assert "refused a WebSocket from Origin" in gateway.log_text()
    # The same host, a client that sends no Origin (not a browser), and the configured allow-list are accepted.
    for url, origin in ((gateway.ws_url, gateway.origin), (f"ws://localhost:{gateway.port}/ws",
                                                          f"http://localhost:{gateway.port}"), (gateway.ws_url, None)):
        with connect(url, origin=origin) as ws:
            assert receive(ws)["type"] == "hello"
    with connect(strict_gateway.ws_url, origin="https://ner.example.com") as ws:
        assert receive(ws)["type"] == "hello"
    with pytest.raises(InvalidStatus):
        connect(strict_gateway.ws_url, origin="https://ner.example.com.evil.example", open_timeout=30)


@pytest.mark.server
def test_connection_limit(strict_gateway):
    with contextlib.ExitStack() as stack:
        open_ones = [stack.enter_context(connect(strict_gateway.ws_url, origin=strict_gateway.origin))
                     for _ in range(3)]
        for ws in open_ones:
            assert receive(ws)["type"] == "hello"
        with connect(strict_gateway.ws_url, origin=strict_gateway.origin) as extra:
            reply = receive(extra)
            assert reply["code"] == "busy" and "max_connections" in reply["error"]
            with pytest.raises(ConnectionClosed) as closed:
                extra.recv(timeout=30)
            assert closed.value.rcvd.code == 1013
        assert triples(ask(open_ones[0], 1, "张三")["entities"]) == [("PER", 0, 2)]
    # Closed connections free their places.
    deadline = time.monotonic() + 30
    while json.loads(http_get(strict_gateway.url + "/healthz")[2])["connections"] and time.monotonic() < deadline:
        time.sleep(0.1)
    with connect(strict_gateway.ws_url, origin=strict_gateway.origin) as ws:
        assert receive(ws)["type"] == "hello"


@pytest.mark.server
def test_many_concurrent_connections(gateway):
    from websockets.asyncio.client import connect as aconnect

    n_connections, per_connection = 40, 3
    texts = [t for t in AWKWARD_TEXTS if t.strip()]

    async def one(k: int) -> list[tuple[str, dict]]:
        async with aconnect(gateway.ws_url, origin=gateway.origin, open_timeout=60) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            sent = [(f"{k}-{j}", texts[(k + j) % len(texts)]) for j in range(per_connection)]
            for request_id, text in sent:
                await ws.send(json.dumps({"id": request_id, "text": text,
                                          "model": "ner" if k % 2 else "ner_fp32"}, ensure_ascii=False))
            answers = {}
            while len(answers) < per_connection:
                message = json.loads(await asyncio.wait_for(ws.recv(), 180))
                if "type" not in message:
                    answers[message["id"]] = message
            return [(text, answers[request_id]) for request_id, text in sent]

    async def all_of_them():
        return await asyncio.gather(*(one(k) for k in range(n_connections)))

    results = asyncio.run(all_of_them())
    assert len(results) == n_connections
    for answers in results:
        for text, answer in answers:
            assert "entities" in answer, answer
            assert triples(answer["entities"]) == expected_entities(text), text


@pytest.mark.server
def test_closed_websocket_cancels_its_pending_requests(served, gateway):
    long_text = "张三在北京的清华大学读书，李四去了上海。" * 1000  # 20,000 characters: takes a while on the CPU
    with connect(gateway.ws_url, origin=gateway.origin) as ws:
        max_pending = receive(ws)["limits"]["max_pending"]
        for i in range(max_pending):
            ws.send(json.dumps({"id": i, "text": long_text + str(i), "model": "ner_fp32"}, ensure_ascii=False))
        # One more is refused as busy only while all the others are in flight: the socket closes under them.
        ws.send(json.dumps({"id": "probe", "text": "张三", "model": "ner_fp32"}, ensure_ascii=False))
        assert reply_to(ws, "probe")["code"] == "busy"
    deadline = time.monotonic() + 30
    while "cancelled" not in gateway.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "connection closed; cancelled" in gateway.log_text()
    # The gateway and Triton are fine afterwards.
    with connect(gateway.ws_url, origin=gateway.origin) as ws:
        receive(ws)
        assert triples(ask(ws, 1, "王小明在长江边")["entities"]) == [("PER", 0, 3), ("LOC", 4, 6)]


@pytest.mark.server
def test_triton_restart_while_a_connection_is_open(served, tmp_path):
    """Our own tritonserver (never the shared one) on a copy of the repository is stopped, the repository exported
    anew (`ner` on the FP32 ONNX file), and Triton started on the same ports under an open WebSocket: the page is
    told, gets clear errors meanwhile, and once Triton is back the next request succeeds, and the page, /healthz and
    the answers carry the new repository's hash."""
    repository = tmp_path / "model_repository"
    first = rewrite(served, repository)
    cfg = ServerConfig(model_repository=repository, http_port=free_port(), grpc_port=free_port(),
                       metrics_port=free_port(), log_file=tmp_path / "triton.log")
    triton = TritonServer(cfg).start(timeout=180)
    try:
        with running_gateway(triton.grpc_url, tmp_path / "gateway.log") as gw:
            wait_healthy(gw)
            with connect(gw.ws_url, origin=gw.origin) as ws:
                assert receive(ws)["triton_ready"] is True
                reply = ask(ws, 1, "张三在北京")
                assert triples(reply["entities"]) == [("PER", 0, 2), ("LOC", 3, 5)]
                assert reply["model_hash"] == first["ner"]

                triton.stop()
                reply = ask(ws, 2, "李四在上海")
                assert reply["code"] in ("triton_unavailable", "model_not_ready"), reply
                assert "Triton" in reply["error"] or "model" in reply["error"]
                status, _, body = http_get(gw.url + "/healthz")
                assert status == 503 and json.loads(body)["triton_ready"] is False

                fp32 = served.repository / "encoder_fp32" / "1" / "model.onnx"
                second = rewrite(served, repository, onnx_files={"fp32": fp32, "int8": fp32})
                assert second["ner"] != first["ner"] and second["ner_fp32"] == first["ner_fp32"]
                triton.start(timeout=180)
                # The gateway notices by itself and tells the page ...
                deadline = time.monotonic() + 60
                while True:
                    message = receive(ws, max(0.1, deadline - time.monotonic()))
                    if message.get("type") == "status" and message["triton_ready"]:
                        break
                assert {m["name"]: m["model_hash"] for m in message["models"]} == second
                # ... and the next request, on the same connection, succeeds, from the new repository.
                reply = ask(ws, 3, "欧阳娜娜在乌鲁木齐")
                assert triples(reply["entities"]) == [("PER", 0, 4), ("LOC", 5, 9)]
                assert reply["model_hash"] == second["ner"]
            health = wait_healthy(gw)
            assert health["triton_ready"] is True
            assert {name: m["model_hash"] for name, m in health["models"].items()} == second
    finally:
        triton.stop()


@pytest.mark.unit
def test_every_setting_has_a_flag_an_env_var_and_a_line_in_the_readme():
    from webui.cli import parse_args
    from webui.gateway import Settings
    from webui.settings import SETTINGS

    readme = (REPO_ROOT / "webui" / "README.md").read_text()
    help_text = subprocess.run([sys.executable, "-m", "webui", "--help"], cwd=REPO_ROOT, capture_output=True,
                               text=True, check=True, env={**os.environ, "COLUMNS": "200"}).stdout
    assert "<!-- options: webui.settings:SETTINGS -->\n" + SETTINGS.markdown() + "<!-- /options -->" in readme
    for setting in SETTINGS:
        assert f"| `{setting.flag}` | `{SETTINGS.env_name(setting)}` |" in readme, setting.name
        assert setting.flag in help_text and SETTINGS.env_name(setting) in help_text, setting.name
    assert parse_args([], environ={}) == Settings()
    env = {"NER_WEBUI_PORT": "9999", "NER_WEBUI_MODELS": "fp32", "NER_TRITON_URL": "http://10.0.0.1:8000"}
    settings = parse_args(["--max-pending", "3"], environ=env)
    assert (settings.port, settings.models, settings.triton_protocol, settings.max_pending) == (
        9999, ("ner_fp32",), "http", 3)
    assert Settings().host == "127.0.0.1" and Settings().effective_allowed_hosts()[:3] == ("127.0.0.1", "localhost", "::1")


@pytest.mark.unit
def test_a_public_bind_needs_allowed_hosts_and_keeps_the_host_check():
    from webui.gateway import Settings, host_allowed

    # Refused in one line with a non-zero exit, before anything binds.
    done = subprocess.run([sys.executable, "-m", "webui", "--host", "0.0.0.0"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={k: v for k, v in os.environ.items() if not k.startswith("NER_WEBUI_")},
                          timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--allowed-hosts" in done.stderr and "0.0.0.0" in done.stderr
    with pytest.raises(ValueError, match="allowed-hosts"):
        Settings(host="0.0.0.0", allowed_hosts=("*",))
    settings = Settings(host="0.0.0.0", allowed_hosts=("Localhost", "127.0.0.1"))
    allowed = settings.effective_allowed_hosts()
    assert host_allowed("localhost:8080", allowed) and host_allowed("127.0.0.1:8080", allowed)
    assert not host_allowed("rebind.example.com:8080", allowed) and not host_allowed(None, allowed)
    assert Settings(host="::1").effective_allowed_hosts() == ("127.0.0.1", "localhost", "::1", "::1")
