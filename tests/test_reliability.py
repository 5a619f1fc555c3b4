"""Reliability against real tritonservers on loopback: a mixed load at concurrency 32, an overload of a tiny queue, a
Python-backend process killed under load, tritonserver killed while the gateway and a browser page are connected,
cancelled and piled-up WebSocket requests, and the safe defaults of `python -m serving up`.

The faults run against `python -m serving up` (the supervisor, Triton and the gateway, on free ports, with a run
directory of their own), as a user would start them. Measured figures (counts, memory, recovery times) go to
build/reliability/*.json; the tests assert behaviour, never timings, except that no request outlives its timeout.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from export.model_hash import parse_config
from export.repository import RepositoryConfig, encoder_step, ensemble_steps, write_repository
from export.synthetic import random_sentence
from ner_client import AsyncNerClient, NerClient, NerError, ServerError, ServerUnavailable
from perf.memory import tree_pss
from serving.processes import cmdline, is_running, listening_sockets, process_tree, stat_fields
from serving.server import REPO_ROOT, ServerConfig, TritonServer, free_port, tail
# The browser fixtures and helpers of the web UI's own test (Debian's Chromium driven by Playwright).
from test_webui_browser import SCREENSHOTS, browser_page, chromium, playwright_api, wait_until  # noqa: F401
from texts import expected_entities

# Every test here runs a load, a fault and its recovery, or a server of its own: the slow lane.
pytestmark = pytest.mark.slow

OUT = REPO_ROOT / "build" / "reliability"
MODELS = ("ner", "ner_fp32")
PROTOCOLS = ("grpc", "http")
# The JSON's rounding: an answer does not depend on what it was batched with (tests/test_batch_independence.py).
SCORE_TOLERANCE = {"ner": 1e-4, "ner_fp32": 1e-4}
CONCURRENCY = 32


def write_figures(name: str, figures: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n")
    print(f"\n{name}: {json.dumps(figures, ensure_ascii=False)[:1500]}")
    return path


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 1), "p95_ms": round(pick(0.95) * 1000, 1),
            "p99_ms": round(pick(0.99) * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}


# --------------------------------------------------------------------------------------------------- workload

def long_text(rng: random.Random, n_chars: int) -> str:
    parts, size = [], 0
    while size < n_chars:
        sentence = random_sentence(rng, 12)[0] + "。"
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


def workload(n: int, seed: int, tag: str) -> list[tuple[str, str, str]]:
    """(kind, model, text): 60 % short distinct texts, 30 % repeated ones (a pool of 24, answered from Triton's
    response cache after the first time), 10 % long ones (600 to 3,000 characters, up to 4 windows); both
    ensembles, about half each."""
    rng = random.Random(seed)
    pool = [random_sentence(random.Random(10_000 + k), 10)[0] + f"（第{k}句）" for k in range(24)]
    items = []
    for i in range(n):
        r = rng.random()
        model = MODELS[rng.random() < 0.5]
        if r < 0.3:
            items.append(("repeated", model, pool[rng.randrange(len(pool))]))
        elif r < 0.9:
            items.append(("short", model, f"{tag}{i}：" + random_sentence(rng, 12)[0]))
        else:
            items.append(("long", model, f"{tag}{i}：" + long_text(rng, rng.choice((600, 1500, 3000)))))
    return items


@dataclass
class Outcome:
    ok: bool
    elapsed: float
    started: float
    entities: list | None = None
    error: str = ""
    message: str = ""


def clients_for(grpc_url: str, http_url: str, timeout: float, retries: int = 1) -> dict:
    urls = {"grpc": grpc_url, "http": http_url}
    return {(p, m): AsyncNerClient(urls[p], p, model=m, timeout=timeout, retries=retries)
            for p in PROTOCOLS for m in MODELS}


async def call(client: AsyncNerClient, text: str) -> Outcome:
    t0 = time.monotonic()
    try:
        entities = await client.extract(text)
        return Outcome(True, time.monotonic() - t0, t0, entities)
    except NerError as err:
        return Outcome(False, time.monotonic() - t0, t0, error=type(err).__name__, message=str(err))


async def drive(grpc_url: str, http_url: str, items, concurrency: int, timeout: float) -> list[Outcome]:
    """Sends ``items`` with ``concurrency`` requests in flight (even workers over gRPC, odd ones over HTTP); no
    retries, so that every failure shows."""
    clients = clients_for(grpc_url, http_url, timeout)
    results: list[Outcome | None] = [None] * len(items)
    indices = iter(range(len(items)))

    async def worker(w: int) -> None:
        protocol = PROTOCOLS[w % 2]
        for i in indices:
            _, model, text = items[i]
            results[i] = await call(clients[(protocol, model)], text)

    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        for client in clients.values():
            await client.close()
    return results  # type: ignore[return-value]


async def flood(grpc_url: str, http_url: str, text_for, concurrency: int, seconds: float,
                timeout: float) -> list[Outcome]:
    """``concurrency`` clients sending new texts (``text_for(n)``) for ``seconds``, each pausing 0.2 s after a
    refusal: far more than the server can take. No retries."""
    clients = clients_for(grpc_url, http_url, timeout)
    results: list[Outcome] = []
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker(w: int) -> None:
        while time.monotonic() < deadline:
            n = next(counter)
            outcome = await call(clients[(PROTOCOLS[w % 2], MODELS[n % 2])], text_for(n))
            results.append(outcome)
            if not outcome.ok:
                await asyncio.sleep(0.2)

    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        for client in clients.values():
            await client.close()
    return results


def single_answers(url: str, pairs) -> dict:
    """The answer to each (model, text) sent alone, one request at a time."""
    answers = {}
    clients = {m: NerClient(url, "grpc", model=m, timeout=120) for m in MODELS}
    try:
        for model, text in pairs:
            answers[(model, text)] = clients[model].extract(text)
    finally:
        for client in clients.values():
            client.close()
    return answers


def quads(entities) -> list[tuple]:
    return [(e.type, e.start, e.end, e.span) for e in entities]


def compare(items, results: list[Outcome], reference: dict) -> tuple[list, dict]:
    """Entities equal to the single-request answer; scores within the precision's tolerance."""
    mismatches, worst = [], {m: 0.0 for m in MODELS}
    for (kind, model, text), outcome in zip(items, results):
        want = reference[(model, text)]
        if quads(outcome.entities) != quads(want):
            mismatches.append((model, kind, text[:60], quads(outcome.entities)[:5], quads(want)[:5]))
            continue
        for got, expected in zip(outcome.entities, want):
            worst[model] = max(worst[model], abs(got.score - expected.score))
            if abs(got.score - expected.score) > SCORE_TOLERANCE[model]:
                mismatches.append((model, kind, text[:60], got.span, got.score, expected.score))
    return mismatches, worst


def triton_gauge(metrics_port: int, name: str, model: str | None = None) -> float:
    """A gauge of Triton's Prometheus metrics (for ``model`` when given), 0 when Triton reports none."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            labels = line.split(" ", 1)[0]
            if labels.split("{")[0] == name and (model is None or f'model="{model}"' in labels):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def cache_used_bytes(server: TritonServer) -> int:
    """The bytes Triton's response cache holds (its gauge nv_cache_util × the cache's size)."""
    return int(triton_gauge(server.cfg.metrics_port, "nv_cache_util") * server.cfg.cache_bytes)


def own_server(repository: Path, log: Path) -> TritonServer:
    return TritonServer(ServerConfig(model_repository=repository, http_port=free_port(), grpc_port=free_port(),
                                     metrics_port=free_port(), log_file=log)).start(timeout=300)


# --------------------------------------------------------------------------------------------------- load

@pytest.mark.server
def test_load_mixed_requests_at_concurrency_32(served, tmp_path, pytestconfig):
    """A few thousand mixed requests at concurrency 32: no failure, every answer equal to the single-request answer,
    and the server's memory after the run within 10 % of its memory after a warm-up of the same mix."""
    tag = secrets.token_hex(3)
    warmup = workload(pytestconfig.getoption("--load-warmup"), 1, f"w{tag}-")
    items = workload(pytestconfig.getoption("--load-requests"), 2, f"r{tag}-")
    server = own_server(served.repository, tmp_path / "tritonserver.log")
    try:
        pid = server.process.pid
        warm = asyncio.run(drive(server.grpc_url, server.http_url, warmup, CONCURRENCY, timeout=120))
        time.sleep(3)  # (Triton refreshes its metrics every 2 s)
        before, cache_before = tree_pss(pid), cache_used_bytes(server)
        started = time.monotonic()
        results = asyncio.run(drive(server.grpc_url, server.http_url, items, CONCURRENCY, timeout=120))
        elapsed = time.monotonic() - started
        time.sleep(3)
        after, cache_after = tree_pss(pid), cache_used_bytes(server)
    finally:
        server.stop()

    failures = [(kind, model, text[:40], r.error, r.message) for (kind, model, text), r in zip(warmup + items,
                                                                                             warm + results) if not r.ok]
    reference = single_answers(served.grpc_url, dict.fromkeys((m, t) for _, m, t in items)) if not failures else {}
    mismatches, worst = compare(items, results, reference) if not failures else ([], {})
    kinds = {k: sum(1 for kind, _, _ in items if kind == k) for k in ("short", "repeated", "long")}
    figures = {
        "requests": len(items), "warmup_requests": len(warmup), "concurrency": CONCURRENCY,
        "mix": {**kinds, **{m: sum(1 for _, model, _ in items if model == m) for m in MODELS},
                "distinct_texts": len({t for _, _, t in items}), "protocols": "gRPC and HTTP, half each"},
        "failed_requests": len(failures), "answers_differing_from_single_request": len(mismatches),
        "max_score_difference": {m: round(v, 6) for m, v in worst.items()},
        "elapsed_s": round(elapsed, 1), "requests_per_s": round(len(items) / elapsed, 1),
        "latency": percentiles([r.elapsed for r in results]),
        "pss_before_mb": round(before["total_bytes"] / 1e6, 1), "pss_after_mb": round(after["total_bytes"] / 1e6, 1),
        "pss_growth": round(after["total_bytes"] / before["total_bytes"] - 1, 4),
        "pss_before_by_process_mb": {k: round(v / 1e6, 1) for k, v in before["processes"].items()},
        "pss_after_by_process_mb": {k: round(v / 1e6, 1) for k, v in after["processes"].items()},
        "response_cache_mb": {"before": round(cache_before / 1e6, 2), "after": round(cache_after / 1e6, 2),
                              "bound": round(server.cfg.cache_bytes / 1e6, 1)},
        "note": "PSS of tritonserver and its stub processes, 'before' measured after a warm-up run of the same mix; "
                "tritonserver's own share holds the response cache, bounded by its size",
    }
    write_figures("load", figures)
    assert failures == [], failures[:5]
    assert mismatches == [], mismatches[:5]
    assert after["total_bytes"] <= 1.10 * before["total_bytes"], figures


# --------------------------------------------------------------------------------------------------- overload

@pytest.mark.server
def test_overload_gets_fast_clear_errors_and_recovers(served, tmp_path):
    """A repository with a tiny queue (4 requests per model, 200 ms queue timeout), flooded for 8 s by 100 clients:
    the requests Triton cannot queue are refused at once with a clear reason while it goes on answering at its
    capacity, every request ends (answer or error) within its timeout, and the server answers normally afterwards."""
    repository = tmp_path / "repo-small-queue"
    source = served.repository
    write_repository(repository, {"fp32": source / "encoder_fp32" / "1" / "model.onnx",
                                  "int8": source / "encoder_int8" / "1" / "model.onnx"},
                     source / "tokenizer" / "1" / "tokenizer.json", served.checkpoint.labels, served.checkpoint.scheme,
                     served.checkpoint.crf, RepositoryConfig(max_queue_size=4, queue_timeout_us=200_000))
    tag = secrets.token_hex(3)
    rng = random.Random(3)
    bodies = [long_text(rng, 1500) for _ in range(200)]
    timeout, seconds, concurrency = 30.0, 8.0, 100
    server = own_server(repository, tmp_path / "tritonserver.log")
    try:
        started = time.monotonic()
        results = asyncio.run(flood(server.grpc_url, server.http_url, lambda n: f"{tag}{n}：" + bodies[n % len(bodies)],
                                    concurrency, seconds, timeout))
        elapsed = time.monotonic() - started
        # Back to normal: one request at a time, each answered as when sent alone to the session's server.
        after_items = [("short", MODELS[i % 2], f"{tag}after{i}：张三在北京的清华大学读书。") for i in range(12)]
        after = asyncio.run(drive(server.grpc_url, server.http_url, after_items, 1, timeout=timeout))
    finally:
        server.stop()

    def kind(r: Outcome) -> str:
        if r.ok:
            return "answered"
        if "Exceeds maximum queue size" in r.message:
            return "queue_full"
        if "Request timeout expired" in r.message:
            return "queue_timeout"
        return f"other: {r.error}: {r.message[:200]}"

    counts: dict[str, int] = {}
    for r in results:
        counts[kind(r)] = counts.get(kind(r), 0) + 1
    figures = {
        "requests": len(results), "concurrency": concurrency, "flood_s": seconds, "text_chars": 1500,
        "max_queue_size": 4, "queue_timeout_ms": 200, "client_timeout_s": timeout, "outcomes": counts,
        "elapsed_s": round(elapsed, 1), "answered_per_s": round(counts.get("answered", 0) / elapsed, 1),
        "latency_answered": percentiles([r.elapsed for r in results if r.ok]),
        "latency_refused": percentiles([r.elapsed for r in results if not r.ok]),
        "error_types": sorted({r.error for r in results if not r.ok}),
        "example_errors": sorted({r.message.split(": ", 1)[-1][:120] for r in results if not r.ok})[:3],
        "after_the_load": f"{sum(r.ok for r in after)}/{len(after)} answered",
    }
    write_figures("overload", figures)
    assert all(r is not None for r in results)
    assert not [k for k in counts if k.startswith("other")], counts
    assert counts.get("queue_full", 0) + counts.get("queue_timeout", 0) > 0, counts  # the bound was reached
    assert counts.get("answered", 0) > 0, counts
    # The SDK reports a refusal as ServerBusy (not retried, so it adds no load), naming Triton's reason.
    assert {r.error for r in results if not r.ok} == {"ServerBusy"}
    assert max(r.elapsed for r in results) < timeout + 5
    assert all(r.ok for r in after), [r.message for r in after if not r.ok]
    reference = single_answers(served.grpc_url, [(m, t) for _, m, t in after_items])
    assert compare(after_items, after, reference)[0] == []


# --------------------------------------------------------------------------------------------------- supervised

@dataclass
class Supervised:
    run_dir: Path
    env: dict
    http_port: int
    grpc_port: int
    metrics_port: int
    gateway_port: int

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def state(self) -> dict:
        return json.loads((self.run_dir / "triton.json").read_text())

    def cli(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "serving", *args], cwd=REPO_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def wait_restarted(self, restarts: int, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state["restarts"] >= restarts and state["state"] == "ready" and state["recoveries"]:
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"no recovery: {state}\n{tail(self.run_dir / 'supervisor.log')}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def supervised(served, tmp_path_factory):
    """`python -m serving up` on free ports with a run directory of its own; the address to bind is left to the
    defaults (no NER_SERVE_HOST, NER_WEBUI_HOST)."""
    run_dir = tmp_path_factory.mktemp("supervised") / "run"
    ports = [free_port() for _ in range(4)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
    env.update({"NER_RUN_DIR": str(run_dir), "NER_SERVE_HTTP_PORT": str(ports[0]),
                "NER_SERVE_GRPC_PORT": str(ports[1]), "NER_SERVE_METRICS_PORT": str(ports[2]),
                "NER_WEBUI_PORT": str(ports[3]),
                "NER_WEBUI_HEALTH_INTERVAL": "0.5"})
    sup = Supervised(run_dir, env, *ports)
    done = sup.cli("up", "--no-build", "--model-repository", str(served.repository))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Web UI  {sup.gateway_url}/" in done.stdout, done.stdout
    try:
        yield sup
    finally:
        sup.cli("down", timeout=200)


def http_request(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    host, port = url.split("//")[-1].split("/")[0].split(":")
    path = "/" + url.split("//")[-1].split("/", 1)[1] if "/" in url.split("//")[-1] else "/"
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.server
def test_defaults_are_safe(supervised):
    """Everything `python -m serving up` starts listens on 127.0.0.1 only; Triton refuses to load or unload models;
    the gateway serves the page, its static files, /ws and /healthz and nothing else."""
    state = supervised.state()
    server_tree = process_tree(state["server_pid"])
    gateway_pid = state["gateway"]["pid"]
    sockets = listening_sockets(server_tree + [gateway_pid])
    assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    assert {port for _, port in sockets} == {supervised.http_port, supervised.grpc_port, supervised.metrics_port,
                                             supervised.gateway_port}, sockets
    assert listening_sockets([state["pid"]]) == []  # the supervisor listens nowhere

    # Model control is off: loading and unloading over HTTP and gRPC are refused, and the models stay loaded.
    argv = cmdline(state["server_pid"])
    assert "--model-control-mode=none" in argv
    for action in ("load", "unload"):
        status, body = http_request("POST", f"http://{supervised.http_url}/v2/repository/models/ner/{action}", b"{}")
        assert status in (400, 403, 503), (action, status, body)
    client = grpcclient.InferenceServerClient(supervised.grpc_url)
    for action in (client.unload_model, client.load_model):
        with pytest.raises(InferenceServerException):
            action("ner")
    assert client.is_model_ready("ner") and client.is_model_ready("ner_fp32")

    # The gateway: the page and its files, /healthz, /ws; nothing of Triton's and nothing else.
    base = supervised.gateway_url
    static = sorted(p.name for p in (REPO_ROOT / "webui" / "static").iterdir() if p.is_file())
    for name in ["", *static]:
        assert http_request("GET", f"{base}/{name}")[0] == 200, name
    assert http_request("GET", f"{base}/healthz")[0] == 200
    for path in ("/v2/models/ner", "/v2/health/ready", "/v2/repository/index", "/metrics", "/docs", "/openapi.json",
                 "/admin", "/webui/gateway.py", "/gateway.py", "/%2e%2e/serving/server.py", "/.git/config",
                 "/static/app.js", "/ws/x"):
        assert http_request("GET", base + path)[0] == 404, path
    assert http_request("POST", base + "/", b"x")[0] == 405


async def load_until(stop: asyncio.Event, clients: dict, tag: str, outcomes: list, workers: int = 8) -> None:
    """Short distinct texts from ``workers`` coroutines (both ensembles, both protocols) until ``stop``; each outcome
    goes to ``outcomes`` as it ends, with its client ((protocol, model): a key of ``clients``) and its text."""

    async def worker(w: int) -> None:
        i = 0
        while not stop.is_set():
            channel = (PROTOCOLS[w % 2], MODELS[(w + i) % 2])
            text = f"{tag}{w}-{i}：张三在北京的清华大学读书。"
            outcome = await call(clients[channel], text)
            outcomes.append((channel, text, outcome))
            if not outcome.ok:
                await asyncio.sleep(0.05)
            i += 1

    await asyncio.gather(*(worker(w) for w in range(workers)))


def after_first_answer(outcomes: list, channel: tuple, since: float) -> list[tuple[str, Outcome]]:
    """(text, outcome) of the requests ``channel``'s client sent once it had its first answer to a request sent after
    ``since``; empty while it has none."""
    mine = sorted(((text, o) for c, text, o in outcomes if c == channel and o.started > since),
                  key=lambda item: item[1].started)
    first = next((o for _, o in mine if o.ok), None)
    return [] if first is None else [(t, o) for t, o in mine if o.started >= first.started + first.elapsed]


async def until(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.mark.server
def test_triton_alone_does_not_restart_a_killed_stub(served, tmp_path):
    """What the supervisor is for: after SIGKILL to a Python-backend stub, Triton 2.51 serves errors through that
    model ('Stub process ... is not healthy') while its readiness endpoint still says ready."""
    from serving.processes import stubs_of

    server = own_server(served.repository, tmp_path / "tritonserver.log")
    stubs = stubs_of(server.process.pid)
    try:
        # every instance of the model running the INT8 encoder (its config's instance count), so that none is left
        encoder = encoder_step(served.repository, "ner")
        int8_stubs = [s for s in stubs if s.name.startswith(f"{encoder}_")]
        config = parse_config((served.repository / encoder / "config.pbtxt").read_text())
        assert len(int8_stubs) == config.instance_group[0].count
        with NerClient(server.grpc_url, model="ner", timeout=30, retries=1) as ner, \
                NerClient(server.grpc_url, model="ner_fp32", timeout=30, retries=1) as fp32:
            assert ner.extract("张三")
            for stub in int8_stubs:
                os.kill(stub.pid, signal.SIGKILL)
            errors = []
            for _ in range(3):
                with pytest.raises(ServerError) as info:
                    ner.extract(f"李四{len(errors)}")
                errors.append(str(info.value))
            assert all(re.search(rf"Stub process '{encoder}_0_\d+' is not healthy", e) for e in errors), errors
            assert server.is_ready()  # /v2/health/ready: 200 all the same
            assert [(e.type, e.span) for e in fp32.extract("王小明在长江边")] == [("PER", "王小明"), ("LOC", "长江")]
    finally:
        server.kill(known_stubs=stubs)  # a graceful stop would wait Triton's exit timeout (30 s) for the dead stub
    # kill() removes the stubs' shared-memory regions, which a killed server leaves behind.
    assert not [s.shm_region for s in stubs if Path("/dev/shm", s.shm_region).exists()]


@pytest.mark.server
def test_killed_python_backend_process_under_load(supervised, served):
    """SIGKILL to the stub of the INT8 ensemble's first step (tokenizer or pipeline) while requests run. Triton does
    not restart the stub: requests through it fail with 'Stub process ... is not healthy' until the supervisor
    notices, kills the server and starts it again; the clients get those clear errors (or a refused connection while
    it restarts), none waits past its timeout, and the service resumes by itself."""
    state = supervised.state()
    stub = f"{ensemble_steps(served.repository, 'ner')[0]}_0_0"
    stub_pid, restarts = state["stubs"][stub], state["restarts"]
    timeout = 20.0
    tag = secrets.token_hex(3)

    # Once a client has an answer after the restart, the service is back for it: from then on every request it sends
    # is answered. The load stops when each client has sent this many such requests.
    per_client = 5

    async def scenario():
        clients = clients_for(supervised.grpc_url, supervised.http_url, timeout)
        stop, outcomes = asyncio.Event(), []
        load = asyncio.ensure_future(load_until(stop, clients, tag, outcomes))
        await until(lambda: all(after_first_answer(outcomes, c, 0) for c in clients), "the load to run", 120)
        killed = time.monotonic()
        os.kill(stub_pid, signal.SIGKILL)
        await until(lambda: supervised.state()["restarts"] > restarts and supervised.state()["state"] == "ready",
                    "the supervisor to restart tritonserver", 240)
        ready = time.monotonic()
        await until(lambda: all(len(after_first_answer(outcomes, c, ready)) >= per_client for c in clients),
                    f"{per_client} requests from every client after its first answer since the restart", 120)
        stop.set()
        await load
        for client in clients.values():
            await client.close()
        return killed, ready, outcomes

    killed, ready, outcomes = asyncio.run(scenario())
    state = supervised.wait_restarted(restarts + 1, timeout=10)
    failed = [(t, o) for _, t, o in outcomes if not o.ok]
    first_failure = min((o.started + o.elapsed for _, o in failed), default=None)
    recovered = min((o.started for _, _, o in outcomes if o.ok and o.started > (first_failure or killed)), default=None)
    errors: dict[str, int] = {}
    for _, o in failed:
        key = f"{o.error}: {'stub not healthy' if 'not healthy' in o.message else o.message.split(': ', 1)[-1][:80]}"
        errors[key] = errors.get(key, 0) + 1
    figures = {
        "killed": f"{stub} (SIGKILL)", "requests": len(outcomes), "answered": len(outcomes) - len(failed),
        "failed": len(failed), "errors": errors, "client_timeout_s": timeout,
        "longest_request_s": round(max(o.elapsed for _, _, o in outcomes), 2),
        "first_failure_after_kill_s": round(first_failure - killed, 2) if first_failure else None,
        "service_back_after_kill_s": round(recovered - killed, 2) if recovered else None,
        "supervisor": state["recoveries"][-1],
    }
    write_figures("killed_stub", figures)
    assert state["restarts"] == restarts + 1 and stub in state["recoveries"][-1]["reason"]
    assert state["stubs"][stub] != stub_pid
    assert not is_running(stub_pid)
    # Clear errors only: the dead stub, the server unreachable while it restarts, or (HTTP) an answer cut off.
    for _, o in failed:
        assert o.error == "ServerUnavailable" or (o.error == "ServerError" and (
            "not healthy" in o.message or "unreadable answer" in o.message)), o
    assert max(o.elapsed for _, _, o in outcomes) < timeout + 5
    # Service resumed: every request a client sent after its first answer since the restart was answered, correctly:
    # as the same weights answer in process (the tiny model tags the lexicon, and now and then a counter's digits too).
    tail_outcomes = [item for channel in {c for c, _, _ in outcomes} for item in after_first_answer(outcomes, channel, ready)]
    assert tail_outcomes and all(o.ok for _, o in tail_outcomes), [o for _, o in tail_outcomes if not o.ok][:3]
    texts = [text for text, _ in tail_outcomes]
    for (text, o), reference in zip(tail_outcomes, served.reference(texts)):
        assert [(e.type, e.start, e.end) for e in o.entities] == [(e["type"], e["start"], e["end"]) for e in reference]

SENTENCE = "😀张三在北京的清华大学读书。"


def wait_for_entities(page, text: str, timeout: float = 120_000) -> None:
    want = [[t, s, e] for t, s, e in expected_entities(text)]
    wait_until(page, """([want, text]) => {
        const rows = [...document.querySelectorAll('#entities tbody tr')]
            .map(r => [r.dataset.type, Number(r.dataset.start), Number(r.dataset.end)]);
        return document.getElementById('text').value === text && JSON.stringify(rows) === JSON.stringify(want)
            && document.getElementById('busy').hidden;
    }""", [want, text], timeout=timeout)


@pytest.mark.browser
def test_triton_killed_while_the_gateway_and_a_page_are_connected(supervised, browser_page):
    """tritonserver is killed under an open page: the page shows 'Triton down', and once the supervisor has Triton
    back, answers the text typed meanwhile by itself. An SDK call during the outage fails after its bounded tries; a
    client with more tries rides through the restart."""
    page = browser_page
    state = supervised.state()
    restarts = state["restarts"]
    page.goto(supervised.gateway_url + "/")
    page.wait_for_selector("body[data-gateway=connected][data-triton=ready]")
    page.fill("#text", SENTENCE)
    wait_for_entities(page, SENTENCE)
    page.evaluate("""() => {
        window.tritonStates = [];
        new MutationObserver(() => window.tritonStates.push(document.body.dataset.triton))
            .observe(document.body, {attributes: true, attributeFilter: ['data-triton']});
    }""")

    patient_result: dict = {}

    def patient() -> None:  # retries until Triton is back (the gRPC channel reconnects by itself)
        t0 = time.monotonic()
        with NerClient(supervised.grpc_url, timeout=180, retries=200, backoff=0.2) as ner:
            try:
                patient_result["entities"] = ner.extract("欧阳娜娜在乌鲁木齐")
            except NerError as err:
                patient_result["error"] = repr(err)
        patient_result["elapsed"] = time.monotonic() - t0

    killed = time.monotonic()
    os.kill(state["server_pid"], signal.SIGKILL)
    # Bounded: a client with 3 tries gives up after 3 refused connections.
    t0 = time.monotonic()
    with NerClient(supervised.grpc_url, timeout=60, retries=3, backoff=0.05) as ner:
        with pytest.raises(ServerUnavailable) as info:
            ner.extract("李四在上海")
    bounded = {"attempts": info.value.attempts, "elapsed_s": round(time.monotonic() - t0, 2)}
    assert info.value.attempts == 3
    rider = threading.Thread(target=patient)
    rider.start()

    page.wait_for_selector("body[data-triton=down]", timeout=60_000)
    seen_down = time.monotonic()
    assert "Triton down" in page.text_content("#banner") and page.is_visible("#banner")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "webui-triton-down.png"))
    edited = SENTENCE + "李四去了上海。"
    page.fill("#text", edited)  # typed during the outage
    page.wait_for_selector("body[data-triton=ready]", timeout=240_000)
    seen_ready = time.monotonic()
    wait_for_entities(page, edited)  # answered without anyone pressing anything
    answered = time.monotonic()
    assert page.is_hidden("#banner")
    rider.join(240)
    states = page.evaluate("() => window.tritonStates")
    state = supervised.wait_restarted(restarts + 1, timeout=10)
    figures = {
        "killed": "tritonserver (SIGKILL)", "bounded_sdk_call": bounded,
        "page_shows_down_after_s": round(seen_down - killed, 2), "page_ready_after_s": round(seen_ready - killed, 2),
        "page_answer_after_s": round(answered - killed, 2),
        "patient_sdk_call": {"elapsed_s": round(patient_result.get("elapsed", -1), 2),
                             "answered": "entities" in patient_result},
        "supervisor": state["recoveries"][-1], "page_triton_states": states,
    }
    write_figures("triton_restart", figures)
    assert "down" in states and states[-1] == "ready"
    assert "exited" in state["recoveries"][-1]["reason"]
    assert [(e.type, e.span) for e in patient_result.get("entities", [])] == [("PER", "欧阳娜娜"), ("LOC", "乌鲁木齐")], \
        patient_result
    assert page.errors == []


# --------------------------------------------------------------------------------------------------- WebSockets

def triton_counts(grpc_url: str, model: str) -> dict:
    stats = grpcclient.InferenceServerClient(grpc_url).get_inference_statistics(model, as_json=True)
    inference = stats["model_stats"][0].get("inference_stats", {})
    return {"success": int(inference.get("success", {}).get("count", 0)),
            "fail": int(inference.get("fail", {}).get("count", 0))}


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of the live processes among ``pids``."""
    fields = [f for f in map(stat_fields, pids) if f is not None]
    return sum(int(f[11]) + int(f[12]) for f in fields) / os.sysconf("SC_CLK_TCK")  # utime, stime


def settle(supervised, models: tuple[str, ...], quiet: float = 3.0, timeout: float = 180.0) -> dict:
    """Triton's counts once they stopped moving for ``quiet`` seconds while the server and its stubs stayed idle: a
    step still running a long request moves no count, so unchanged counts alone can end before it does."""
    pids = process_tree(supervised.state()["server_pid"])
    deadline, last, since, cpu = time.monotonic() + timeout, None, time.monotonic(), cpu_seconds(pids)
    while time.monotonic() < deadline:
        now = {m: triton_counts(supervised.grpc_url, m) for m in models}
        if now != last:
            last, since, cpu = now, time.monotonic(), cpu_seconds(pids)
        elif time.monotonic() - since >= quiet:
            if cpu_seconds(pids) - cpu < 0.1 * quiet:
                break
            since, cpu = time.monotonic(), cpu_seconds(pids)
        time.sleep(0.25)
    return last


def reply_summary(message: dict) -> dict:
    """A WebSocket answer without its entities: its id and either its error code or how many entities it had."""
    if "error" in message:
        return {"id": message.get("id"), "code": message.get("code"), "error": message["error"][:200]}
    return {"id": message.get("id"), "entities": len(message.get("entities", []))}


def send_until_queued(ws, metrics_port: int, encoder: str, texts: list[str],
                      tries: int = 3) -> tuple[int, list[dict]]:
    """Sends ``texts`` (one burst per try) until Triton's gauge shows one waiting for ``encoder`` while others run;
    returns how many texts were sent and the answers that came back before. A burst whose texts were all answered before one had to wait shows
    nothing about cancellation, so it is sent again; a burst that neither queues nor ends fails with its answers."""
    seen: list[dict] = []
    for attempt in range(tries):
        for i, text in enumerate(texts):
            ws.send(json.dumps({"id": f"{attempt}-{i}", "text": text, "model": "ner_fp32"}, ensure_ascii=False))
        replies: list[dict] = []
        deadline = time.monotonic() + 120
        while triton_gauge(metrics_port, "nv_inference_pending_request_count", encoder) < 1:
            assert time.monotonic() < deadline, f"no text waited for {encoder} in 120 s; answers: {replies}"
            if len(replies) == len(texts):
                break
            try:
                message = json.loads(ws.recv(timeout=0.02))
            except TimeoutError:
                continue
            if "id" in message:
                replies.append(reply_summary(message))
        else:
            return len(texts) * (attempt + 1), seen + replies
        seen += replies
    raise AssertionError(f"every burst was answered before a text waited for {encoder}: {seen}")


@pytest.mark.server
def test_closed_websocket_stops_its_work_in_triton(supervised, served):
    """Eight long texts sent, the WebSocket closed once some wait in Triton's queue for the FP32 encoder (its own gauge
    says so) while others run: the gateway cancels its calls and Triton drops the requests it had not finished (its
    own statistics say so). Each text is 100 windows, far more work than the cancellation's trip over the loopback."""
    from websockets.sync.client import connect

    encoder = encoder_step(served.repository, "ner_fp32")
    models = ("ner_fp32", encoder)
    before = settle(supervised, models)
    tag = secrets.token_hex(3)
    long_text_ = "张三在北京的清华大学读书，李四去了上海。" * 2500  # 50,000 characters, 100 windows
    deadline = time.monotonic() + 60  # the test before restarts Triton: the gateway must know it is back
    while http_request("GET", f"{supervised.gateway_url}/healthz")[0] != 200:
        assert time.monotonic() < deadline, "the gateway never reported Triton ready"
        time.sleep(0.25)
    with connect(f"ws://127.0.0.1:{supervised.gateway_port}/ws", origin=supervised.gateway_url,
                 max_size=None) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
        texts = [f"{tag}{i}" + long_text_ for i in range(8)]
        sent, answered = send_until_queued(ws, supervised.metrics_port, encoder, texts)
        closed = time.monotonic()
    after = settle(supervised, models)
    idle = time.monotonic() - closed
    delta = {m: {k: after[m][k] - before[m][k] for k in after[m]} for m in models}
    log = (supervised.run_dir / "webui.log").read_text(errors="replace")
    figures = {"sent": sent, "answered_before_close": answered, "triton_counts_after_close": delta,
               "triton_idle_after_close_s_upper_bound": round(idle, 1),
               "gateway_log": [line for line in log.splitlines() if "cancelled" in line][-1:]}
    write_figures("cancelled_requests", figures)
    assert "connection closed; cancelled" in log
    assert all("entities" in a for a in answered), answered  # what was answered was served, not refused
    assert delta["ner_fp32"]["success"] < sent, delta  # Triton did not finish them all
    assert delta["ner_fp32"]["fail"] >= 1, delta  # ... it cancelled the rest


@pytest.mark.server
def test_a_client_that_floods_one_connection_gets_busy_not_a_queue(supervised):
    """Forty long texts in one burst on one connection: at most max_pending (8) are in Triton's hands at once; the rest
    are answered 'busy' at once, and Triton receives exactly the requests that were accepted (nothing piles up)."""
    from websockets.sync.client import connect

    before = settle(supervised, ("ner_fp32",))
    tag = secrets.token_hex(3)
    text = "王小明在微软公司工作，欧阳娜娜在联合国。" * 500
    replies = []
    with connect(f"ws://127.0.0.1:{supervised.gateway_port}/ws", origin=supervised.gateway_url,
                 max_size=None) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "hello"
        for i in range(40):
            ws.send(json.dumps({"id": i, "text": f"{tag}{i}" + text, "model": "ner_fp32"}, ensure_ascii=False))
        while len(replies) < 40:
            message = json.loads(ws.recv(timeout=300))
            if "type" not in message:
                replies.append(message)
    after = settle(supervised, ("ner_fp32",))
    busy = [r for r in replies if r.get("code") == "busy"]
    answered = [r for r in replies if "entities" in r]
    received = after["ner_fp32"]["success"] + after["ner_fp32"]["fail"] - before["ner_fp32"]["success"] \
        - before["ner_fp32"]["fail"]
    write_figures("flooded_connection", {"sent": 40, "answered": len(answered), "busy": len(busy),
                                         "triton_received": received})
    assert len(busy) + len(answered) == 40 and busy
    assert received == len(answered)


@pytest.mark.server
def test_down_stops_everything(supervised):
    """`python -m serving down`: the supervisor, tritonserver with its stubs and the gateway are gone, their ports
    free, the stubs' shared memory removed."""
    state = supervised.state()
    pids = [state["pid"], state["gateway"]["pid"], *process_tree(state["server_pid"])]
    regions = [a for pid in pids for a in cmdline(pid) if a.startswith("triton_python_backend_shm_region_")]
    assert len(regions) == len(state["stubs"]) >= 4
    done = supervised.cli("down")
    assert done.returncode == 0 and "stopped the supervisor" in done.stdout, done.stdout + done.stderr
    assert not [pid for pid in pids if is_running(pid)]
    assert not (supervised.run_dir / "triton.json").exists()
    assert not [r for r in regions if Path("/dev/shm", r).exists()]
    status = supervised.cli("status")
    assert status.returncode == 1 and "not running" in status.stdout
    log = (supervised.run_dir / "supervisor.log").read_text()
    assert "restarting tritonserver" in log and "supervisor" in log and "exiting" in log
