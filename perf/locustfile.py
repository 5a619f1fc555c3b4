"""locust users for the suite (run headless by ``perf/locust_run.py``, loopback only, bounded in time and count).

- ``TritonHttpUser``: Triton's HTTP inference endpoint, ``POST /v2/models/<model>/infer`` with one text.
- ``WebSocketUser``: the web UI's gateway, ``/ws``: sends ``{"id", "text", "model"}`` and waits for the answer with
  that id (``{"id", "entities", "latency_ms", "model"}``), skipping the gateway's status messages.

Settings: ``perf.locust_run.LOCUST_SETTINGS`` (NER_PERF_LOCUST_TEXTS, _MODEL, _WS_URL, _MAX_REQUESTS). locust imports
this file itself and passes it no arguments of ours, so this is the one module that reads its settings when imported:
through the settings layer, from the environment that ``perf/locust_run.py`` prepares.
"""

from __future__ import annotations

import itertools
import json
import time

from locust import FastHttpUser, User, events, task

from perf.locust_run import LOCUST_SETTINGS

SETTINGS = LOCUST_SETTINGS.parse([], prog="perf/locustfile.py")
TEXTS = json.loads(SETTINGS.texts.read_text(encoding="utf-8")) if SETTINGS.texts else ["张三在北京的清华大学读书。"]
MODEL = SETTINGS.model
WS_URL = SETTINGS.ws_url
MAX_REQUESTS = SETTINGS.max_requests
_counter = itertools.count()
_texts = itertools.cycle(range(len(TEXTS)))


def _next_text() -> str:
    return TEXTS[next(_texts)]


def _count_and_maybe_stop(environment) -> None:
    if MAX_REQUESTS and next(_counter) + 1 >= MAX_REQUESTS and environment.runner is not None:
        environment.runner.quit()


@events.init_command_line_parser.add_listener
def _(parser):  # nothing to add; kept so that `locust -f perf/locustfile.py --help` documents the environment
    parser.description = __doc__


class TritonHttpUser(FastHttpUser):
    """Triton's own HTTP/REST endpoint (KServe v2 protocol)."""

    @task
    def infer(self):
        body = {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1, 1], "data": [_next_text()]}]}
        with self.client.post(f"/v2/models/{MODEL}/infer", json=body, name=f"/v2/models/{MODEL}/infer",
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            else:
                try:
                    outputs = {o["name"]: o for o in response.json()["outputs"]}
                    json.loads(outputs["ENTITIES"]["data"][0])
                except (KeyError, ValueError, TypeError) as err:
                    response.failure(f"unexpected answer: {err}")
        _count_and_maybe_stop(self.environment)


class WebSocketUser(User):
    """The web UI's WebSocket gateway: one request in flight per user, as a typing user would have."""

    def on_start(self):
        import websocket  # websocket-client (a locust dependency); gevent makes its socket cooperative

        self.ws = websocket.create_connection(WS_URL, timeout=30)
        self.sequence = itertools.count()

    def on_stop(self):
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()

    @task
    def extract(self):
        request_id = f"{id(self)}-{next(self.sequence)}"
        text = _next_text()
        started = time.perf_counter()
        exception, length = None, 0
        try:
            self.ws.send(json.dumps({"id": request_id, "text": text, "model": MODEL}, ensure_ascii=False))
            while True:
                raw = self.ws.recv()
                length = len(raw)
                message = json.loads(raw)
                if message.get("id") == request_id:
                    if "error" in message:
                        exception = RuntimeError(f"{message.get('code')}: {message['error']}")
                    elif not isinstance(message.get("entities"), list):
                        exception = RuntimeError(f"unexpected answer: {raw[:200]}")
                    break
        except Exception as err:  # noqa: BLE001 - reported to locust as a failure
            exception = err
        self.environment.events.request.fire(request_type="WS", name="/ws extract", response_time=(time.perf_counter() - started) * 1000,
                                             response_length=length, exception=exception, context={})
        _count_and_maybe_stop(self.environment)
