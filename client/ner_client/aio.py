"""``AsyncNerClient``: the asyncio client, on tritonclient's aio gRPC or HTTP client; many requests may be in flight."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Iterable, TypeVar

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


class _AioGrpcTransport:
    def __init__(self, target: Target):
        import tritonclient.grpc as grpcclient
        import tritonclient.grpc.aio as aio

        from tritonclient.utils import InferenceServerException

        self.module = grpcclient
        self.errors = InferenceServerException
        self.target = target
        self.client = aio.InferenceServerClient(target.url, ssl=target.ssl, channel_args=GRPC_CHANNEL_ARGS)
        self.output = [grpcclient.InferRequestedOutput(OUTPUT_NAME)]

    async def _checked(self, timeout: float, call: Awaitable[T]) -> T:
        try:
            return await call
        except self.errors as exc:
            if looks_like_wrong_port(exc):
                wrong = await asyncio.to_thread(wrong_port, self.target.url, "grpc", timeout)
                if wrong is not None:
                    raise wrong from exc
            raise

    async def infer(self, model: str, array: np.ndarray, timeout: float) -> np.ndarray | None:
        tensor = self.module.InferInput(INPUT_NAME, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array)
        result = await self._checked(timeout, self.client.infer(model, [tensor], outputs=self.output,
                                                                client_timeout=timeout))
        return result.as_numpy(OUTPUT_NAME)

    async def config(self, model: str, timeout: float) -> dict:
        return (await self._checked(timeout, self.client.get_model_config(model, as_json=True,
                                                                          client_timeout=timeout)))["config"]

    async def metadata(self, model: str, timeout: float) -> dict:
        return await self._checked(timeout, self.client.get_model_metadata(model, as_json=True,
                                                                           client_timeout=timeout))

    async def model_ready(self, model: str, timeout: float) -> bool:
        return await self._checked(timeout, self.client.is_model_ready(model, client_timeout=timeout))

    async def close(self) -> None:
        await self.client.close()


class _AioHttpTransport:
    def __init__(self, target: Target, timeout: float):
        import aiohttp
        import tritonclient.http as httpclient
        import tritonclient.http.aio as aio

        self.aiohttp = aiohttp
        self.module = httpclient
        self.target = target
        context = None
        if target.ssl:
            import ssl

            context = ssl.create_default_context()
        self.client = aio.InferenceServerClient(target.url, conn_timeout=timeout, ssl=target.ssl, ssl_context=context)
        self.output = [httpclient.InferRequestedOutput(OUTPUT_NAME, binary_data=True)]

    async def _bounded(self, timeout: float, call: Awaitable[T]) -> T:
        aiohttp = self.aiohttp
        try:
            return await asyncio.wait_for(call, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                raise ConnectionRefusedError(str(exc)) from exc
            raise
        except aiohttp.ServerDisconnectedError as exc:
            raise ConnectionResetError(str(exc) or "server disconnected") from exc
        except aiohttp.ClientError as exc:
            if isinstance(exc, OSError):
                raise
            wrong = await asyncio.to_thread(wrong_port, self.target.url, "http", timeout)
            raise wrong or ServerError(f"unreadable answer from {self.target.display}: {exc}") from exc

    async def infer(self, model: str, array: np.ndarray, timeout: float) -> np.ndarray | None:
        tensor = self.module.InferInput(INPUT_NAME, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array, binary_data=True)
        result = await self._bounded(timeout, self.client.infer(model, [tensor], outputs=self.output))
        return result.as_numpy(OUTPUT_NAME)

    async def config(self, model: str, timeout: float) -> dict:
        return await self._bounded(timeout, self.client.get_model_config(model))

    async def metadata(self, model: str, timeout: float) -> dict:
        return await self._bounded(timeout, self.client.get_model_metadata(model))

    async def model_ready(self, model: str, timeout: float) -> bool:
        return await self._bounded(timeout, self.client.is_model_ready(model))

    async def close(self) -> None:
        await self.client.close()


class AsyncNerClient(ClientBase):
    """The asyncio twin of :class:`ner_client.NerClient` (same arguments, same errors); its methods are coroutines.

    >>> async with AsyncNerClient("127.0.0.1:8001") as ner:
    ...     entities = await ner.extract("张三在北京的清华大学读书。")

    Calls may run concurrently (``asyncio.gather``): each is its own request in flight. ``extract_many`` keeps up
    to ``concurrency`` of its requests in flight at once. Use a client within one event loop.
    """

    grpc_transport = _AioGrpcTransport
    http_transport = _AioHttpTransport

    def __init__(self, url: str | None = None, protocol: str | None = None, model: str | None = None, *,
                 precision: str | None = None, timeout: float = 30.0, retries: int = 3, backoff: float = 0.1,
                 max_chars_per_request: int = DEFAULT_MAX_CHARS_PER_REQUEST, concurrency: int = 4):
        super().__init__(url, protocol, model, precision, timeout, retries, backoff, max_chars_per_request)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = int(concurrency)

    # -- the calls ---------------------------------------------------------------------------------------------

    async def extract(self, text: Text) -> list[Entity]:
        array = text_array([check_text(text)])
        return (await self._infer(array, [0]))[0]

    async def extract_many(self, texts: Iterable[Text], batch_size: int | None = None, *,
                           concurrency: int | None = None,
                           progress: Callable[[int], Any] | None = None) -> list[list[Entity]]:
        """Like ``NerClient.extract_many``, with up to ``concurrency`` requests in flight; the order is kept."""
        texts = check_texts(texts)
        if not texts:
            return []
        limit = batch_limit(batch_size, await self.model_info())
        results: list[list[Entity] | None] = [None] * len(texts)
        gate = asyncio.Semaphore(concurrency or self.concurrency)

        async def run(chunk: list[int]) -> None:
            async with gate:
                array = text_array([texts[i] for i in chunk], chunk)
                for i, entities in zip(chunk, await self._infer(array, chunk)):
                    results[i] = entities
                if progress is not None:
                    progress(len(chunk))

        tasks = [asyncio.ensure_future(run(chunk))
                 for chunk in plan_chunks(texts, limit, self.max_chars_per_request)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return results  # type: ignore[return-value]

    async def model_info(self, refresh: bool = False) -> ModelInfo:
        if self._info is None or refresh:
            config = await self._call(lambda transport, timeout: transport.config(self.model, timeout))
            metadata = await self._call(lambda transport, timeout: transport.metadata(self.model, timeout))
            self._info = parse_model_info(self.model, config, metadata)
        return self._info

    async def ready(self) -> bool:
        try:
            return bool(await self._call(lambda transport, timeout: transport.model_ready(self.model, timeout),
                                         tries=1))
        except (ServerUnavailable, RequestTimeout, ModelNotReady):
            return False

    async def wait_ready(self, timeout: float = 60.0, interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while True:
            last: NerError
            try:
                if await self._call(lambda transport, t: transport.model_ready(self.model, t), tries=1,
                                    timeout=max(0.1, min(self.timeout, deadline - time.monotonic()))):
                    return
                last = self._not_ready()
            except (ServerUnavailable, RequestTimeout, ModelNotReady) as err:
                last = err
            if time.monotonic() + interval >= deadline:
                raise last
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()

    async def __aenter__(self) -> "AsyncNerClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- plumbing ----------------------------------------------------------------------------------------------

    async def _infer(self, array: np.ndarray, indices: list[int]) -> list[list[Entity]]:
        try:
            output = await self._call(lambda transport, timeout: transport.infer(self.model, array, timeout))
        except InputRejected as err:
            raise with_request_index(err, indices) from err.__cause__
        return entities_of(output, len(indices))

    async def _call(self, op: Callable[[Any, float], Awaitable[T]], tries: int | None = None,
                    timeout: float | None = None) -> T:
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
                return await op(self._connect(), left)
            except (InferenceServerException, OSError) as exc:
                error, retry = self._failure(exc, attempt, timeout)
                cause: BaseException = exc
            delay = backoff_delay(attempt, self.backoff)
            if not retry or attempt >= tries or time.monotonic() + delay >= deadline:
                raise error from cause
            await asyncio.sleep(delay)
