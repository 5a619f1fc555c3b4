"""The web UI's gateway: serves the static page, a WebSocket endpoint that calls Triton through the async client SDK
(``ner_client.AsyncNerClient``), and a health check. It holds no model.

Exposed: ``/`` (the files of ``webui/static/`` and nothing else), ``/ws`` and ``/healthz``.

Protocol on ``/ws`` (JSON text frames; see webui/README.md):

- page → gateway: ``{"id": <string|number>, "text": <string>, "model": "ner"|"ner_fp32"|"int8"|"fp32"}``
- gateway → page: ``{"id", "entities", "latency_ms", "model", "model_hash"}`` or ``{"id", "error", "code"}``; and,
  without an id, ``{"type": "hello"|"status", "triton_ready", "models", "default_model", "limits"}`` on connect and
  whenever Triton's readiness or a model's hash changes.

Each model's configuration (its hash, types and limits) is read again at every readiness check, so that a repository
exported anew and served by a restarted Triton is reported as such within one ``health_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

import ner_client
from ner_client import InputRejected, ModelNotReady, NerError, RequestTimeout, ServerUnavailable
from ner_client._core import MODEL_FOR_PRECISION, resolve_target

from .settings import SETTINGS, is_loopback

log = logging.getLogger("webui")

STATIC_DIR = Path(__file__).resolve().parent / "static"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# Messages above max_message_bytes get an error and the connection stays open; only a frame above this transport
# cap (at least 16 MiB) makes the WebSocket layer close the connection (code 1009), so that nobody can make the
# gateway buffer an unbounded frame.
MIN_TRANSPORT_CAP = 16 * 1024 * 1024


@dataclass(frozen=True)
class Settings(make_dataclass("SettingValues", [(s.name, Any, field(default=s.default)) for s in SETTINGS],
                              frozen=True)):
    """The gateway's settings: one field per setting of ``webui.settings.SETTINGS``, its declared default unless
    given; ``triton_url`` comes out with its scheme and ``triton_protocol`` resolved."""

    def __post_init__(self):
        if not self.models:
            raise ValueError("no models to serve")
        target = resolve_target(self.triton_url, self.triton_protocol, None, None)
        object.__setattr__(self, "triton_url", target.display)
        object.__setattr__(self, "triton_protocol", target.protocol)
        object.__setattr__(self, "models", tuple(MODEL_FOR_PRECISION.get(m.lower(), m) for m in self.models))
        object.__setattr__(self, "allowed_origins", tuple(o.rstrip("/").lower() for o in self.allowed_origins))
        # Off loopback a DNS-rebinding page reaches the gateway under a name of its own: only names given on purpose
        # may pass the Host check, and the check cannot be switched off.
        if not is_loopback(self.host) and not self.allowed_hosts:
            raise ValueError(f"--host {self.host} is not a loopback address: name the Host header values to accept "
                             "with --allowed-hosts (NER_WEBUI_ALLOWED_HOSTS), e.g. ner.example.com")
        if self.allowed_hosts is not None and "*" in self.allowed_hosts:
            raise ValueError("--allowed-hosts takes host names, not '*': the Host check guards against DNS rebinding")

    @property
    def default_model(self) -> str:
        return self.models[0]

    @property
    def transport_cap(self) -> int:
        return max(MIN_TRANSPORT_CAP, 4 * self.max_message_bytes)

    def effective_allowed_hosts(self) -> tuple[str, ...]:
        if self.allowed_hosts is not None:
            return tuple(h.lower().strip("[]") for h in self.allowed_hosts)
        return (*LOOPBACK_NAMES, self.host.lower().strip("[]"))


# ---------------------------------------------------------------------------------------------------------------
# Errors: what the page is told. `code` lets the page tell an outage from a bad request.

class RequestError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def describe_sdk_error(err: BaseException, model: str, timeout: float) -> RequestError:
    """The SDK's typed errors, as the page is told them: what happened, without Triton's internal address (the
    details go to the gateway's log); a rejection carries the server's own reason."""
    if isinstance(err, ServerUnavailable):
        return RequestError("triton_unavailable", "Triton is unavailable (cannot connect); the gateway keeps trying")
    if isinstance(err, ModelNotReady):
        return RequestError("model_not_ready", f"the model '{model}' is not ready on Triton")
    if isinstance(err, InputRejected):
        return RequestError("rejected", f"Triton rejected the text: {getattr(err, 'reason', err)}")
    if isinstance(err, (RequestTimeout, asyncio.TimeoutError, TimeoutError)):
        return RequestError("timeout", f"Triton did not answer within {timeout:g} s")
    return RequestError("triton_error", "Triton failed to process the text (see the gateway's log)")


# ---------------------------------------------------------------------------------------------------------------

def _get(obj: Any, key: str, default=None):
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _types_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return [str(t) for t in value]


@dataclass
class ModelState:
    name: str
    precision: str | None = None
    entity_types: list[str] = field(default_factory=list)
    max_text_chars: int | None = None
    model_hash: str | None = None
    ready: bool = False

    def public(self) -> dict:
        return {"name": self.name, "precision": self.precision, "model_hash": self.model_hash,
                "entity_types": self.entity_types, "max_text_chars": self.max_text_chars, "ready": self.ready}

    def signature(self) -> tuple:
        return self.ready, self.precision, self.model_hash, tuple(self.entity_types), self.max_text_chars


class Connection:
    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()
        self.closed = False

    async def send(self, message: dict) -> None:
        if self.closed:
            return
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        async with self.lock:
            try:
                await self.websocket.send_text(data)
            except Exception:  # the peer went away: the receive loop ends this connection
                self.closed = True


class Gateway:
    def __init__(self, settings: Settings, client_factory: Callable[[str], Any] | None = None):
        self.settings = settings
        self.client_factory = client_factory or self._make_client
        self.clients: dict[str, Any] = {}
        self.models: dict[str, ModelState] = {name: ModelState(name) for name in settings.models}
        self.triton_ready = False
        self.connections: set[Connection] = set()
        self._monitor: asyncio.Task | None = None
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = float("-inf")
        self._background: set[asyncio.Task] = set()

    def _make_client(self, model: str):
        s = self.settings
        return ner_client.AsyncNerClient(s.triton_url, protocol=s.triton_protocol, model=model,
                                         timeout=s.request_timeout, retries=s.retries)

    # lifecycle ---------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        for name in self.settings.models:
            self.clients[name] = self.client_factory(name)
        await self.refresh()
        self._monitor = asyncio.create_task(self._watch(), name="triton-health")

    async def stop(self) -> None:
        if self._monitor:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for conn in list(self.connections):
            for task in conn.tasks:
                task.cancel()
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                result = client.close()
                if inspect.isawaitable(result):
                    await result

    # Triton's state --------------------------------------------------------------------------------------------
    async def _model_ready(self, name: str) -> bool:
        timeout = max(1.0, min(5.0, self.settings.health_interval * 2))
        try:
            return bool(await asyncio.wait_for(self.clients[name].ready(), timeout))
        except (NerError, asyncio.TimeoutError, OSError):
            return False
        except Exception as err:  # noqa: BLE001 - a health check reports, it does not crash the gateway
            log.debug("readiness check of %s failed: %r", name, err)
            return False

    async def _load_info(self, state: ModelState) -> None:
        info = await asyncio.wait_for(self.clients[state.name].model_info(refresh=True), 10)
        state.precision = _get(info, "precision") or state.precision
        state.model_hash = _get(info, "model_hash") or None
        types = _types_list(_get(info, "entity_types"))
        if not types:  # derive from the labels (B-PER, I-LOC, ...)
            labels = _types_list(_get(info, "labels"))
            types = list(dict.fromkeys(label.split("-", 1)[1] for label in labels if "-" in label))
        state.entity_types = types
        limit = _get(info, "max_text_chars")
        state.max_text_chars = int(limit) if limit else None

    async def refresh(self, max_age: float = 0.0) -> bool:
        """Checks every model's readiness and reads the configuration of each ready one; tells the pages when
        Triton's state or a model's configuration changed. Returns whether Triton is ready (every model ready). With
        ``max_age``, a check made less than that many seconds ago stands (so /healthz cannot be used to flood
        Triton)."""
        async with self._refresh_lock:
            if max_age and time.monotonic() - self._refreshed_at < max_age:
                return self.triton_ready  # checked just now (by another caller)
            before = (self.triton_ready, [m.signature() for m in self.models.values()])
            ready = await asyncio.gather(*(self._model_ready(name) for name in self.models))
            # Read every time, not only when a model becomes ready: a Triton restarted between two checks may serve
            # a repository exported anew.
            loaded = await asyncio.gather(*(self._load_info(state) for state, ok in zip(self.models.values(), ready)
                                            if ok), return_exceptions=True)
            failed = iter(loaded)
            for state, ok in zip(self.models.values(), ready):
                if ok:
                    err = next(failed)
                    if err is not None:
                        log.warning("could not read the configuration of %s: %r", state.name, err)
                        ok = False
                state.ready = ok
            self.triton_ready = all(m.ready for m in self.models.values())
            self._refreshed_at = time.monotonic()
            after = (self.triton_ready, [m.signature() for m in self.models.values()])
            if after != before:
                log.info("Triton %s; %s", "ready" if self.triton_ready else "not ready",
                         ", ".join(f"{m.name} {m.model_hash or '?'}" for m in self.models.values()))
                await self.broadcast(self.status("status"))
            return self.triton_ready

    async def mark_down(self) -> None:
        if self.triton_ready or any(m.ready for m in self.models.values()):
            self.triton_ready = False
            for state in self.models.values():
                state.ready = False
            await self.broadcast(self.status("status"))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001
                log.exception("health check failed")

    def status(self, kind: str) -> dict:
        s = self.settings
        return {"type": kind, "triton_ready": self.triton_ready,
                "models": [m.public() for m in self.models.values()], "default_model": s.default_model,
                "limits": {"max_message_bytes": s.max_message_bytes, "max_text_chars": self.text_limit(None),
                           "max_pending": s.max_pending}}

    async def broadcast(self, message: dict) -> None:
        await asyncio.gather(*(conn.send(message) for conn in list(self.connections)), return_exceptions=True)

    # requests ------------------------------------------------------------------------------------------------------
    def resolve_model(self, requested: Any) -> str:
        if requested is None or requested == "":
            return self.settings.default_model
        if not isinstance(requested, str):
            raise RequestError("bad_request", "model must be a string")
        name = MODEL_FOR_PRECISION.get(requested.lower(), requested)
        if name not in self.models:
            served = ", ".join(f"{m} ({st.precision or '?'})" for m, st in self.models.items())
            raise RequestError("unknown_model", f"unknown model {requested[:64]!r}; served: {served}")
        return name

    def text_limit(self, model: str | None) -> int:
        limits = [self.settings.max_text_chars]
        states = [self.models[model]] if model else list(self.models.values())
        limits += [st.max_text_chars for st in states if st.max_text_chars]
        return min(limits)

    async def extract(self, model: str, text: str) -> tuple[list[dict], float]:
        t0 = time.perf_counter()
        try:
            entities = await self.clients[model].extract(text)
        except NerError as err:
            error = describe_sdk_error(err, model, self.settings.request_timeout)
            log.warning("%s: %s", error.code, err)
            if error.code in ("triton_unavailable", "model_not_ready"):
                await self.mark_down()
            raise error from err
        latency_ms = (time.perf_counter() - t0) * 1000
        if not self.models[model].ready and not self._background:  # it answered: it is back
            task = asyncio.get_running_loop().create_task(self.refresh())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return [e.to_dict() if hasattr(e, "to_dict") else dict(e) for e in entities], latency_ms


ID_HEAD = re.compile(r'^\s*\{\s*"id"\s*:\s*(-?\d{1,15}|"[^"\\]{0,128}")')


def peek_id(raw: str) -> Any:
    """The id of a message too large to parse, when it comes first (the page sends it first)."""
    match = ID_HEAD.match(raw[:256])
    return json.loads(match.group(1)) if match else None


def utf8_size(raw: str, limit: int) -> int:
    if len(raw) * 4 <= limit:  # cannot be over
        return len(raw)
    return len(raw.encode("utf-8", "surrogatepass"))


def parse_request(raw: str, gateway: Gateway) -> tuple[Any, str, str]:
    s = gateway.settings
    size = utf8_size(raw, s.max_message_bytes)
    if size > s.max_message_bytes:
        raise _with_id(RequestError("too_large", f"message of {size} bytes is over the limit of "
                                                 f"{s.max_message_bytes} bytes (max_message_bytes)"), peek_id(raw))
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as err:
        raise _with_id(RequestError("bad_json", f"malformed JSON: {err}"), None) from None
    if not isinstance(message, dict):
        raise _with_id(RequestError("bad_request", "expected a JSON object {\"id\", \"text\", \"model\"}"), None)
    request_id = message.get("id")
    valid_id = (isinstance(request_id, str) and len(request_id) <= 128) or (
        isinstance(request_id, (int, float)) and not isinstance(request_id, bool) and math.isfinite(request_id))
    if not valid_id:
        raise _with_id(RequestError("bad_request", "id must be a string (at most 128 characters) or a number"), None)
    try:
        text = message.get("text")
        if not isinstance(text, str):
            raise RequestError("bad_request", "text must be a string")
        model = gateway.resolve_model(message.get("model"))
        limit = gateway.text_limit(model)
        if len(text) > limit:
            raise RequestError("too_long", f"text of {len(text)} characters is over the limit of {limit} "
                                           f"characters (max_text_chars)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError("bad_request", "text is not valid Unicode (it holds a lone surrogate)") from None
    except RequestError as err:
        raise _with_id(err, request_id) from None
    return request_id, text, model


def _with_id(err: RequestError, request_id: Any) -> RequestError:
    err.request_id = request_id
    return err


def error_message(err: RequestError) -> dict:
    return {"id": getattr(err, "request_id", None), "error": str(err), "code": err.code}


# ---------------------------------------------------------------------------------------------------------------
# HTTP and WebSocket endpoints

def origin_allowed(origin: str | None, host: str | None, settings: Settings) -> bool:
    """Browsers always send Origin: it must name this gateway's own host (as the Host header does) or be in the
    allow-list. Clients that are not browsers send none and cannot be used for cross-site requests."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if "*" in settings.allowed_origins or origin in settings.allowed_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host.strip().lower()


def host_allowed(host_header: str | None, allowed: tuple[str, ...]) -> bool:
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host in allowed


class HostGuard:
    """Rejects requests whose Host header is not an allowed name (a DNS-rebinding page would carry its own)."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not host_allowed(Headers(scope=scope).get("host"), self.allowed):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await PlainTextResponse("Host not allowed", status_code=400)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    HEADERS = [
        (b"content-security-policy", b"default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                                     b"style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cache-control", b"no-cache"),
    ]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in self.HEADERS if k not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def websocket_endpoint(websocket: WebSocket) -> None:
    gateway: Gateway = websocket.app.state.gateway
    s = gateway.settings
    if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"), s):
        log.warning("refused a WebSocket from Origin %r", websocket.headers.get("origin"))
        await websocket.close(code=1008)  # before accept: the handshake gets HTTP 403
        return
    conn = Connection(websocket)
    if len(gateway.connections) >= s.max_connections:
        await websocket.accept()
        await conn.send({"id": None, "error": f"too many connections (max_connections={s.max_connections}); "
                                              f"try again later", "code": "busy"})
        await websocket.close(code=1013)
        return
    gateway.connections.add(conn)
    try:
        await websocket.accept()
        await conn.send(gateway.status("hello"))
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            if raw is None:
                await conn.send({"id": None, "error": "binary frames are not accepted; send JSON text",
                                 "code": "bad_request"})
                continue
            try:
                request_id, text, model = parse_request(raw, gateway)
                if len(conn.tasks) >= s.max_pending:
                    raise _with_id(RequestError("busy", f"too many requests in flight on this connection "
                                                        f"(max_pending={s.max_pending})"), request_id)
            except RequestError as err:
                await conn.send(error_message(err))
                continue
            task = asyncio.create_task(answer(gateway, conn, request_id, text, model))
            conn.tasks.add(task)
            task.add_done_callback(conn.tasks.discard)
    finally:
        # A closed WebSocket cancels its pending requests: nobody would read their answers.
        conn.closed = True
        gateway.connections.discard(conn)
        pending = list(conn.tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.info("connection closed; cancelled %d pending request(s)", len(pending))


async def answer(gateway: Gateway, conn: Connection, request_id: Any, text: str, model: str) -> None:
    try:
        if text == "":
            entities, latency_ms = [], 0.0
        else:
            entities, latency_ms = await gateway.extract(model, text)
    except RequestError as err:
        await conn.send(error_message(_with_id(err, request_id)))
        return
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001
        log.exception("request %r failed", request_id)
        await conn.send({"id": request_id, "error": "internal error in the gateway", "code": "internal"})
        return
    await conn.send({"id": request_id, "entities": entities, "latency_ms": round(latency_ms, 2), "model": model,
                     "model_hash": gateway.models[model].model_hash})


async def healthz(request) -> JSONResponse:
    gateway: Gateway = request.app.state.gateway
    ready = await gateway.refresh(max_age=min(1.0, gateway.settings.health_interval))
    body = {"gateway": "ok", "triton_ready": ready,
            "models": {m.name: {"ready": m.ready, "precision": m.precision, "model_hash": m.model_hash}
                       for m in gateway.models.values()},
            "connections": len(gateway.connections)}
    return JSONResponse(body, status_code=200 if ready else 503)


def create_app(settings: Settings | None = None, client_factory: Callable[[str], Any] | None = None):
    settings = settings or Settings()
    gateway = Gateway(settings, client_factory)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.gateway = gateway
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(routes=[
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        WebSocketRoute("/ws", websocket_endpoint),
        Mount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="static"),
    ], lifespan=lifespan)
    app.state.gateway = gateway
    return HostGuard(SecurityHeaders(app), settings.effective_allowed_hosts())
