"""Typed exceptions, and the translation of tritonclient's and the transports' errors into them."""

from __future__ import annotations

import re
import socket

__all__ = ["NerError", "ServerUnavailable", "ServerBusy", "ModelNotReady", "InputRejected", "RequestTimeout",
           "ServerError"]


class NerError(Exception):
    """Base class of every error the SDK raises about a call to the server."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ServerUnavailable(NerError, ConnectionError):
    """The server could not be reached (connection refused or reset, gRPC UNAVAILABLE, HTTP 503), after
    ``attempts`` tries."""

    def __init__(self, message: str, url: str = "", attempts: int = 1):
        super().__init__(message)
        self.url = url
        self.attempts = attempts


class ServerBusy(ServerUnavailable):
    """The server is up but refused the request under load (its queue was full, or the request waited in the queue
    past the queue's timeout). Not retried by the SDK: retrying would add to the overload; back off and try later."""


class ModelNotReady(NerError):
    """The server answers but the model is not loaded or not ready (or no model of that name is served)."""

    def __init__(self, message: str, model: str = ""):
        super().__init__(message)
        self.model = model


class InputRejected(NerError, ValueError):
    """The server refused the input. ``reason`` is the server's own message; ``index`` is the position of the
    offending text in the call's input when the server names one (the server counts within its request, which in
    ``extract_many`` is one chunk of the call: ``request_index``)."""

    def __init__(self, reason: str, index: int | None = None, request_index: int | None = None):
        super().__init__("input rejected: " + relabel(reason, request_index, f"text {index}")
                         if index is not None and request_index is not None else f"input rejected: {reason}")
        self.reason = reason
        self.index = index
        self.request_index = request_index


class RequestTimeout(NerError, TimeoutError):
    """No answer within the call's timeout (retries included)."""

    def __init__(self, message: str, timeout: float = 0.0):
        super().__init__(message)
        self.timeout = timeout


class ServerError(NerError):
    """Any other error the server returned; ``status`` is its HTTP status or gRPC code."""

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status


# The tokenizer model rejects bad input with these messages (see ner_pipeline.windows.InputRejected); the server
# returns them as INTERNAL / HTTP 500, so the SDK recognises them by their wording as well as by status.
_INPUT_MESSAGES = ("not valid utf-8", "over the limit", "max_text_chars", "max_rows_per_request", "batch-size must be")
_NOT_READY_MESSAGES = ("unknown model", "is not ready", "no available versions", "is not found")
_UNAVAILABLE_CODES = {"StatusCode.UNAVAILABLE", "503"}
# Triton's words when a model's bounded queue refuses a request (max_queue_size, default_timeout_microseconds).
_BUSY_MESSAGES = ("exceeds maximum queue size", "request timeout expired")
_TIMEOUT_CODES = {"StatusCode.DEADLINE_EXCEEDED", "504"}
_INVALID_CODES = {"StatusCode.INVALID_ARGUMENT", "400", "StatusCode.OUT_OF_RANGE", "413"}
_NOT_FOUND_CODES = {"StatusCode.NOT_FOUND", "404"}
_TEXT_INDEX = re.compile(r"\btext (\d+)\b")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def relabel(reason: str, request_index: int | None, name: str) -> str:
    """The server's reason with its "text <request_index>" renamed (e.g. to the text's index in the call)."""
    if request_index is None:
        return reason
    return re.sub(rf"\btext {request_index}\b", name, reason, count=1)


def text_index(reason: str) -> int | None:
    """The request-local index of the text a rejection names ("text 3 is not valid UTF-8 ..."), if any."""
    match = _TEXT_INDEX.search(reason)
    return int(match.group(1)) if match else None


def from_server(exc: BaseException, *, url: str, model: str, timeout: float) -> tuple[NerError, bool]:
    """Translates a tritonclient ``InferenceServerException`` into (typed error, whether retrying is safe)."""
    status = str(exc.status()) if callable(getattr(exc, "status", None)) and exc.status() is not None else ""
    message = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    message = one_line(message or str(exc))
    lowered = message.lower()
    if any(m in lowered for m in _BUSY_MESSAGES):
        return ServerBusy(f"the NER server at {url} is overloaded: {message}", url), False
    if status in _UNAVAILABLE_CODES:
        return ServerUnavailable(f"the NER server at {url} is unavailable: {message}", url), True
    if status in _TIMEOUT_CODES:
        return RequestTimeout(f"no answer from {url} within {timeout:g} s ({message})", timeout), False
    if status in _NOT_FOUND_CODES or any(m in lowered for m in _NOT_READY_MESSAGES):
        return ModelNotReady(f"model '{model}' is not ready on {url}: {message}", model), False
    if status in _INVALID_CODES or any(m in lowered for m in _INPUT_MESSAGES):
        return InputRejected(message), False
    return ServerError(f"the NER server at {url} failed: {message}" + (f" [{status}]" if status else ""), status), False


def peer_protocol(url: str, timeout: float) -> str | None:
    """What the server at ``host:port`` answers to a plain HTTP/1.1 request: "HTTP/1.1" (a status line: Triton's
    HTTP port), "HTTP/2" (an HTTP/2 server's first frame, SETTINGS on stream 0: Triton's gRPC port), or None."""
    host, _, port = url.rpartition(":")
    head = b""
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except (OSError, ValueError):
        return None
    if head.startswith(b"HTTP/1."):
        return "HTTP/1.1"
    if len(head) == 9 and head[3] == 0x04 and head[5:9] == bytes(4):  # frame type 4 = SETTINGS, stream 0
        return "HTTP/2"
    return None


def wrong_port(url: str, protocol: str, timeout: float) -> ServerUnavailable | None:
    """The error for a client that talks to the other protocol's port, or None if the port is not that. Asked only
    after a failure that could be it, whose own words do not say so: gRPC's closed socket (``looks_like_wrong_port``),
    or an HTTP answer that does not parse."""
    speaks = peer_protocol(url, min(timeout, 2.0))
    if protocol == "grpc" and speaks == "HTTP/1.1":
        return ServerUnavailable(f"the server at grpc://{url} answers HTTP/1.1, not gRPC: this looks like Triton's "
                                 f"HTTP port; use http://{url} or the gRPC port", url)
    if protocol == "http" and speaks == "HTTP/2":
        return ServerUnavailable(f"the server at http://{url} answers in HTTP/2 (gRPC), not HTTP/1.1: this looks "
                                 f"like Triton's gRPC port; use grpc://{url} or the HTTP port", url)
    return None


def looks_like_wrong_port(exc: BaseException) -> bool:
    """gRPC UNAVAILABLE on a connection the server closed: an HTTP/1.1 server (Triton's HTTP port) closes the
    connection on gRPC's HTTP/2 preface without a word, and gRPC reports "Socket closed"."""
    status = str(exc.status()) if callable(getattr(exc, "status", None)) else ""
    message = (exc.message() if callable(getattr(exc, "message", None)) else None) or str(exc)
    return status == "StatusCode.UNAVAILABLE" and any(m in message.lower() for m in ("socket closed",
                                                                                   "connection reset"))


def from_os_error(exc: BaseException, *, url: str, timeout: float) -> tuple[NerError, bool]:
    """Translates a transport error (socket, geventhttpclient, aiohttp) into (typed error, retry is safe)."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return RequestTimeout(f"no answer from {url} within {timeout:g} s", timeout), False
    if isinstance(exc, (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        reason = {ConnectionRefusedError: "connection refused", ConnectionResetError: "connection reset"}.get(
            type(exc), one_line(str(exc)) or type(exc).__name__)
        return ServerUnavailable(f"the NER server at {url} is unavailable: {reason}", url), True
    reason = one_line(str(exc)) or type(exc).__name__
    return ServerUnavailable(f"cannot talk to the NER server at {url}: {reason}", url), False
