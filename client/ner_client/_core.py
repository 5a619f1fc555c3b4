"""What the sync and asyncio clients share: targets, request tensors, answers, chunking and back-off."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Iterable, Sequence, Union

import numpy as np

from .entity import Entity, ModelInfo
from .errors import InputRejected, ServerError

Text = Union[str, bytes]

PROTOCOLS = ("grpc", "http")
MODEL_FOR_PRECISION = {"int8": "ner", "fp32": "ner_fp32"}
DEFAULT_URL = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}  # Triton's own default ports
DEFAULT_MODEL = "ner"
INPUT_NAME = "TEXT"
OUTPUT_NAME = "ENTITIES"
DEFAULT_MAX_CHARS_PER_REQUEST = 16_384
BACKOFF_CAP = 2.0

# Reconnect quickly after the server comes back: gRPC's default first reconnect back-off is 1 s (up to 120 s),
# during which every call fails at once with UNAVAILABLE and retries would be pointless. (Not
# grpc.min_reconnect_backoff_ms: it is also the connect timeout, 20 s by default, and must stay generous.)
GRPC_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", False),
    ("grpc.http2.max_pings_without_data", 2),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


@dataclass(frozen=True)
class Target:
    url: str  # host:port, without a scheme (as tritonclient wants it)
    protocol: str
    ssl: bool
    model: str

    @property
    def display(self) -> str:
        return f"{'https' if self.ssl else self.protocol}://{self.url}"




def resolve_target(url: str | None, protocol: str | None, model: str | None, precision: str | None) -> Target:
    """``url`` may carry the protocol as a scheme (``grpc://``, ``http://``, ``https://``); ``precision``
    ("int8", "fp32") names the ensemble when ``model`` is not given."""
    ssl = False
    scheme = None
    if url and "://" in url:
        scheme, url = url.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("grpc", "http", "https"):
            raise ValueError(f"unknown URL scheme {scheme!r}: use grpc://, http:// or https://, or none")
        ssl = scheme == "https"
        scheme = "http" if scheme == "https" else scheme
    if protocol is not None:
        protocol = protocol.lower()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
        if scheme is not None and scheme != protocol:
            raise ValueError(f"the URL says {scheme} but protocol={protocol!r}")
    protocol = protocol or scheme or "grpc"
    url = (url or DEFAULT_URL[protocol]).rstrip("/")
    if precision is not None:
        key = precision.lower()
        if key not in MODEL_FOR_PRECISION:
            raise ValueError(f"precision must be one of {', '.join(MODEL_FOR_PRECISION)}, not {precision!r}")
        if model is not None and model != MODEL_FOR_PRECISION[key]:
            raise ValueError(f"model={model!r} and precision={precision!r} disagree; give one of them")
        model = MODEL_FOR_PRECISION[key]
    return Target(url, protocol, ssl, model or DEFAULT_MODEL)


def as_bytes(text: Text, index: int = 0) -> bytes:
    if isinstance(text, str):
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise InputRejected(f"text {index} cannot be encoded as UTF-8 ({err.reason} at code point {err.start})",
                                index) from None
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError(f"a text must be str (or UTF-8 bytes), not {type(text).__name__}")


def text_array(texts: Sequence[Text], indices: Sequence[int] | None = None) -> np.ndarray:
    """[n, 1] BYTES tensor of UTF-8 texts; ``indices`` are the texts' positions in the caller's input."""
    array = np.empty((len(texts), 1), dtype=np.object_)
    for row, text in enumerate(texts):
        array[row, 0] = as_bytes(text, indices[row] if indices is not None else row)
    return array


def entities_of(output: np.ndarray | None, expected: int) -> list[list[Entity]]:
    if output is None:
        raise ServerError(f"the server's answer has no {OUTPUT_NAME} output")
    rows = output.reshape(-1)
    if len(rows) != expected:
        raise ServerError(f"the server answered {len(rows)} rows for {expected} texts")
    try:
        return [[Entity.from_dict(e) for e in json.loads(row)] for row in rows]
    except (ValueError, KeyError, TypeError) as err:
        raise ServerError(f"the server's {OUTPUT_NAME} is not the expected JSON: {err}") from None


def check_texts(texts: Iterable[Text]) -> list[Text]:
    if isinstance(texts, (str, bytes)):
        raise TypeError("extract_many takes a sequence of texts; use extract for a single text")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"text {i} must be str (or UTF-8 bytes), not {type(text).__name__}")
    return texts


def check_text(text: Text) -> Text:
    if not isinstance(text, (str, bytes, bytearray, memoryview)):
        hint = "; use extract_many for several texts" if isinstance(text, (list, tuple)) else ""
        raise TypeError(f"a text must be str (or UTF-8 bytes), not {type(text).__name__}{hint}")
    return text


def plan_chunks(texts: Sequence[Text], max_texts: int, max_chars: int, sort_by_length: bool = True) -> list[list[int]]:
    """Groups text positions into requests of at most ``max_texts`` texts and about ``max_chars`` characters (a
    longer text goes alone). Similar lengths go together (the server pads a request's rows to one length)."""
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lengths.__getitem__) if sort_by_length else range(len(texts))
    chunks: list[list[int]] = []
    current: list[int] = []
    chars = 0
    for i in order:
        if current and (len(current) >= max_texts or chars + lengths[i] > max_chars):
            chunks.append(current)
            current, chars = [], 0
        current.append(i)
        chars += lengths[i]
    if current:
        chunks.append(current)
    return chunks


def batch_limit(batch_size: int | None, info: ModelInfo) -> int:
    if batch_size is not None and batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    limit = max(1, info.max_texts_per_request)
    return min(batch_size, limit) if batch_size else limit


def backoff_delay(attempt: int, base: float) -> float:
    """Exponential back-off with jitter before try ``attempt + 1``: base, 2·base, 4·base … (capped), ×[0.5, 1]."""
    return min(BACKOFF_CAP, base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def parse_model_info(name: str, config: dict[str, Any], metadata: dict[str, Any]) -> ModelInfo:
    """From the JSON model configuration (HTTP, or gRPC with ``as_json=True`` and its ``config`` key unwrapped) and
    the model's metadata (its ``versions``)."""
    params = {k: (v or {}).get("string_value", "") for k, v in (config.get("parameters") or {}).items()}

    def integer(key: str, fallback: int) -> int:
        try:
            return int(params[key])
        except (KeyError, ValueError):
            return fallback

    def names(key: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in params.get(key, "").split(",") if x.strip())

    max_batch = int(config.get("max_batch_size") or 0)
    versions = sorted(metadata.get("versions") or [], key=lambda v: (len(v), v))
    return ModelInfo(
        name=config.get("name") or name,
        version=versions[-1] if versions else "",
        model_hash=params.get("model_hash", ""),
        precision=params.get("precision", ""),
        labels=names("labels"),
        entity_types=names("entity_types"),
        scheme=params.get("scheme", ""),
        crf=params.get("crf", "").lower() == "true",
        max_text_chars=integer("max_text_chars", 0),
        window_tokens=integer("window_tokens", 0),
        max_texts_per_request=integer("max_texts_per_request", max_batch or 1),
    )


class ClientBase:
    """Settings, transport choice and error mapping shared by ``NerClient`` and ``AsyncNerClient``; each subclass
    names its two transports and runs the calls in its own way (blocking or awaited)."""

    grpc_transport: Any = None
    http_transport: Any = None

    def __init__(self, url: str | None, protocol: str | None, model: str | None, precision: str | None,
                 timeout: float, retries: int, backoff: float, max_chars_per_request: int):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 1:
            raise ValueError("retries (the most tries per request) must be at least 1")
        self.target = resolve_target(url, protocol, model, precision)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_chars_per_request = int(max_chars_per_request)
        self._transport: Any = None
        self._info: ModelInfo | None = None

    @property
    def url(self) -> str:
        return self.target.url

    @property
    def protocol(self) -> str:
        return self.target.protocol

    @property
    def model(self) -> str:
        return self.target.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target.display!r}, model={self.model!r})"

    def _connect(self):
        # Created on first use: the asyncio transports must be made inside the running loop.
        if self._transport is None:
            if self.protocol == "grpc":
                self._transport = self.grpc_transport(self.target)
            else:
                self._transport = self.http_transport(self.target, self.timeout)
        return self._transport

    def _not_ready(self):
        from .errors import ModelNotReady

        return ModelNotReady(f"model '{self.model}' is not ready on {self.target.display}", self.model)

    def _deadline_error(self, timeout: float):
        from .errors import RequestTimeout

        return RequestTimeout(f"no answer from {self.target.display} within {timeout:g} s", timeout)

    def _failure(self, exc: BaseException, attempt: int, timeout: float):
        """The project's error for a failed try, and whether another try may help; None if ``exc`` is not ours."""
        from tritonclient.utils import InferenceServerException

        from .errors import NerError, ServerUnavailable, from_os_error, from_server

        if isinstance(exc, NerError):  # the transport's own diagnosis (a wrong port): final as it is
            return exc, False
        if isinstance(exc, InferenceServerException):
            error, retry = from_server(exc, url=self.target.display, model=self.model, timeout=timeout)
        elif isinstance(exc, OSError):
            error, retry = from_os_error(exc, url=self.target.display, timeout=timeout)
        else:
            return None
        if isinstance(error, ServerUnavailable):
            error.attempts = attempt
            error.message = f"{error.message} (after {attempt} {'try' if attempt == 1 else 'tries'})"
        return error, retry


def with_request_index(err: InputRejected, indices: Sequence[int]) -> InputRejected:
    """A refusal naming the text by its index in the caller's list, not in the request."""
    from .errors import text_index

    local = text_index(err.reason)
    index = indices[local] if local is not None and local < len(indices) else None
    return InputRejected(err.reason, index, local)
