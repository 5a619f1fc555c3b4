"""``NerClient``: the blocking client, on tritonclient's gRPC or HTTP client."""

from __future__ import annotations

import http.client
import time
from typing import Any, Callable, Iterable, TypeVar

import numpy as np

from ._core import (
    DEFAULT_MAX_CHARS_PER_REQUEST, GRPC_CHANNEL_ARGS, INPUT_NAME, OUTPUT_NAME, ClientBase, Target, Text,
    backoff_delay, batch_limit, check_text, check_texts, entities_of, parse_model_info, plan_chunks, text_array,
    with_request_index,
)
from .entity import Entity, ModelInfo
from .errors import (
    InputRejected, ModelNotReady, NerError, RequestTimeout, ServerError, ServerUnavailable, looks_like_wrong_port,
    wrong_port,
)

T = TypeVar("T")


class _GrpcTransport:
    def __init__(self, target: Target):
        import tritonclient.grpc as grpcclient

        from tritonclient.utils import InferenceServerException

        self.module = grpcclient
        self.errors = InferenceServerException
        self.target = target
        self.client = grpcclient.InferenceServerClient(target.url, ssl=target.ssl, channel_args=GRPC_CHANNEL_ARGS)
        self.output = [grpcclient.InferRequestedOutput(OUTPUT_NAME)]

    def _checked(self, timeout: float, call: Callable[[], T]) -> T:
        try:
            return call()
        except self.errors as exc:
            if looks_like_wrong_port(exc):
                wrong = wrong_port(self.target.url, "grpc", timeout)
                if wrong is not None:
                    raise wrong from exc
            raise

    def infer(self, model: str, array: np.ndarray, timeout: float) -> np.ndarray | None:
        tensor = self.module.InferInput(INPUT_NAME, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array)
        return self._checked(timeout, lambda: self.client.infer(model, [tensor], outputs=self.output,
                                                                client_timeout=timeout).as_numpy(OUTPUT_NAME))

    def config(self, model: str, timeout: float) -> dict:
        return self._checked(timeout, lambda: self.client.get_model_config(model, as_json=True,
                                                                           client_timeout=timeout)["config"])

    def metadata(self, model: str, timeout: float) -> dict:
        return self._checked(timeout, lambda: self.client.get_model_metadata(model, as_json=True,
                                                                             client_timeout=timeout))

    def model_ready(self, model: str, timeout: float) -> bool:
        return self._checked(timeout, lambda: self.client.is_model_ready(model, client_timeout=timeout))

    def close(self) -> None:
        self.client.close()


class _HttpTransport:
    """geventhttpclient under tritonclient: a whole call is bounded with a gevent timer; after a timer fires the
    client (whose connection may be mid-answer) is replaced."""

    def __init__(self, target: Target, timeout: float):
        import gevent
        import tritonclient.http as httpclient

        self.gevent = gevent
        self.module = httpclient
        self.target = target
        self.timeout = timeout
        self.client = self._new_client()
        self.output = [httpclient.InferRequestedOutput(OUTPUT_NAME, binary_data=True)]

    def _new_client(self):
        return self.module.InferenceServerClient(self.target.url, ssl=self.target.ssl,
                                                 connection_timeout=self.timeout, network_timeout=self.timeout)

    def _bounded(self, timeout: float, call: Callable[[], T]) -> T:
        timer = self.gevent.Timeout(timeout)
        timer.start()
        try:
            return call()
        except self.gevent.Timeout as exc:
            if exc is not timer:
                raise
            self._replace_client()
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        except http.client.HTTPException as exc:
            self._replace_client()
            if type(exc).__name__ == "HTTPConnectionClosed":
                raise ConnectionResetError(str(exc) or "connection closed") from exc
            raise wrong_port(self.target.url, "http", timeout) or ServerError(
                f"unreadable answer from {self.target.display}: {exc}") from exc
        finally:
            timer.close()

    def _replace_client(self) -> None:
        old, self.client = self.client, self._new_client()
        try:
            old.close()
        except Exception:
            pass

    def infer(self, model: str, array: np.ndarray, timeout: float) -> np.ndarray | None:
        tensor = self.module.InferInput(INPUT_NAME, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array, binary_data=True)
        return self._bounded(timeout, lambda: self.client.infer(model, [tensor], outputs=self.output)
                             .as_numpy(OUTPUT_NAME))

    def config(self, model: str, timeout: float) -> dict:
        return self._bounded(timeout, lambda: self.client.get_model_config(model))

    def metadata(self, model: str, timeout: float) -> dict:
        return self._bounded(timeout, lambda: self.client.get_model_metadata(model))

    def model_ready(self, model: str, timeout: float) -> bool:
        return self._bounded(timeout, lambda: self.client.is_model_ready(model))

    def close(self) -> None:
        self.client.close()


class NerClient(ClientBase):
    """Blocking client of the NER service.

    >>> with NerClient("127.0.0.1:8001") as ner:
    ...     ner.extract("张三在北京的清华大学读书。")

    url        ``host:port``, optionally with a scheme (``grpc://``, ``http://``, ``https://``) that sets the protocol;
               default 127.0.0.1:8001 for gRPC, 127.0.0.1:8000 for HTTP.
    protocol   "grpc" (default) or "http".
    model      the ensemble's name (default "ner", INT8), or ``precision`` "int8" / "fp32" (→ "ner" / "ner_fp32").
    timeout    seconds each request to the server may take, retries included.
    retries    the most tries per request; only failures to reach the server (connection refused or reset, gRPC
               UNAVAILABLE, HTTP 503) are tried again, after an exponential back-off starting at ``backoff`` seconds.
    max_chars_per_request  the character budget of one request in ``extract_many`` (a longer text goes alone).

    A client with protocol="http" must not be shared between threads (the gRPC one may be).
    """

    grpc_transport = _GrpcTransport
    http_transport = _HttpTransport

    def __init__(self, url: str | None = None, protocol: str | None = None, model: str | None = None, *,
                 precision: str | None = None, timeout: float = 30.0, retries: int = 3, backoff: float = 0.1,
                 max_chars_per_request: int = DEFAULT_MAX_CHARS_PER_REQUEST):
        super().__init__(url, protocol, model, precision, timeout, retries, backoff, max_chars_per_request)

    # -- the calls ---------------------------------------------------------------------------------------------

    def extract(self, text: Text) -> list[Entity]:
        """The entities of one text (str, or UTF-8 bytes for raw use)."""
        array = text_array([check_text(text)])
        return self._infer(array, [0])[0]

    def extract_many(self, texts: Iterable[Text], batch_size: int | None = None, *,
                     progress: Callable[[int], Any] | None = None) -> list[list[Entity]]:
        """The entities of each text, in the order given. The texts go in requests of at most ``batch_size`` (and
        at most the server's ``max_texts_per_request``) texts and about ``max_chars_per_request`` characters, one
        after the other; ``progress(n)`` is called as each request's ``n`` texts are done."""
        texts = check_texts(texts)
        if not texts:
            return []
        limit = batch_limit(batch_size, self.model_info())
        results: list[list[Entity] | None] = [None] * len(texts)
        for chunk in plan_chunks(texts, limit, self.max_chars_per_request):
            array = text_array([texts[i] for i in chunk], chunk)
            for i, entities in zip(chunk, self._infer(array, chunk)):
                results[i] = entities
            if progress is not None:
                progress(len(chunk))
        return results  # type: ignore[return-value]

    def model_info(self, refresh: bool = False) -> ModelInfo:
        """Name, version, model hash, labels, entity types, precision and limits, as the server reports them (read
        once; ``refresh`` reads them again)."""
        if self._info is None or refresh:
            config = self._call(lambda transport, timeout: transport.config(self.model, timeout))
            metadata = self._call(lambda transport, timeout: transport.metadata(self.model, timeout))
            self._info = parse_model_info(self.model, config, metadata)
        return self._info

    def ready(self) -> bool:
        """Whether the server answers and the model is ready (one try, within ``timeout``)."""
        try:
            return bool(self._call(lambda transport, timeout: transport.model_ready(self.model, timeout), tries=1))
        except (ServerUnavailable, RequestTimeout, ModelNotReady):
            return False

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.5) -> None:
        """Waits until ``ready()``; raises ServerUnavailable or ModelNotReady when ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        while True:
            last: NerError
            try:
                if self._call(lambda transport, t: transport.model_ready(self.model, t), tries=1,
                              timeout=max(0.1, min(self.timeout, deadline - time.monotonic()))):
                    return
                last = self._not_ready()
            except (ServerUnavailable, RequestTimeout, ModelNotReady) as err:
                last = err
            if time.monotonic() + interval >= deadline:
                raise last
            time.sleep(interval)

    def close(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()

    def __enter__(self) -> "NerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _infer(self, array: np.ndarray, indices: list[int]) -> list[list[Entity]]:
        try:
            output = self._call(lambda transport, timeout: transport.infer(self.model, array, timeout))
        except InputRejected as err:
            raise with_request_index(err, indices) from err.__cause__
        return entities_of(output, len(indices))

    def _call(self, op: Callable[[Any, float], T], tries: int | None = None, timeout: float | None = None) -> T:
        """Runs ``op(transport, seconds_left)`` with retries where safe, all within the timeout."""
        from tritonclient.utils import InferenceServerException

        timeout = self.timeout if timeout is None else timeout
        tries = self.retries if tries is None else tries
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._deadline_error(timeout)
            try:
                return op(self._connect(), left)
            except (InferenceServerException, OSError) as exc:
                error, retry = self._failure(exc, attempt, timeout)
                cause: BaseException = exc
            delay = backoff_delay(attempt, self.backoff)
            if not retry or attempt >= tries or time.monotonic() + delay >= deadline:
                raise error from cause
            time.sleep(delay)
