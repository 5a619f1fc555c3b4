"""The supervisor that ``python -m serving up`` leaves running: it starts tritonserver (and the web gateway), watches
them, and restarts what failed.

Why: when a Python-backend stub process dies (killed, out of memory, a crash in a native library), Triton 2.51 does
not restart it; every request through that model fails from then on (``Stub process '<instance>' is not healthy``)
while ``/v2/health/ready`` still says ready, and a graceful stop waits Triton's whole exit timeout for the dead stub.
So the supervisor watches the processes themselves:

- tritonserver exited (crash, or killed by anyone but the supervisor);
- one of the stubs present when the server became ready is gone (or a zombie);
- ``/v2/health/live`` failing ``liveness_failures`` times in a row (a hung server).

On any of these it kills the server's process group at once (the requests in flight cannot be answered anyway; the
clients see a dropped connection, which the SDK retries), removes the stubs' shared-memory regions, and starts the
server again on the same ports. Restarts are bounded: at most ``max_restarts`` within ``restart_window`` seconds,
the first at once and each further one after a back-off (2 s, 4 s, … up to 30 s); past the bound the supervisor
stops restarting and reports ``failed`` (``python -m serving status``). The gateway, when it runs, is restarted if
it exits, under the same kind of bound. Every event goes to the supervisor's log; the state (pids, restarts, the
time each recovery took) to the state file that ``status`` reads.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .processes import (become_subreaper, dead_stubs, http_status, probe_host, reap_zombies, remove_shm_regions, stop,
                        stubs_of)
from .server import REPO_ROOT, ServerConfig, TritonServer, tail

log = logging.getLogger("serving.supervisor")


@dataclass
class RestartPolicy:
    max_restarts: int = 5
    window: float = 600.0
    backoff: float = 2.0
    backoff_cap: float = 30.0

    def __post_init__(self):
        self._times: deque[float] = deque()

    def next_delay(self, now: float) -> float | None:
        """Seconds to wait before the next restart, or None when the bound is reached. Records the restart."""
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        if len(self._times) >= self.max_restarts:
            return None
        recent = len(self._times)
        self._times.append(now)
        return 0.0 if recent == 0 else min(self.backoff_cap, self.backoff * 2 ** (recent - 1))


@dataclass
class GatewaySpec:
    host: str
    port: int
    log_file: str
    env: dict[str, str] = field(default_factory=dict)  # added to the supervisor's environment


@dataclass
class SupervisorSpec:
    server: dict  # ServerConfig's fields, JSON-ready
    state_file: str
    start_timeout: float = 180.0
    max_restarts: int = 5
    restart_window: float = 600.0
    gateway: dict | None = None  # GatewaySpec's fields
    info: dict = field(default_factory=dict)  # shown by status (checkpoint, ...)
    poll_interval: float = 0.2
    liveness_interval: float = 5.0
    liveness_failures: int = 6

    @staticmethod
    def server_dict(cfg: ServerConfig) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}

    def server_config(self) -> ServerConfig:
        values = dict(self.server)
        for key in ("model_repository", "log_file", "layout_root"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return ServerConfig(**values)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, path: Path) -> "SupervisorSpec":
        return cls(**json.loads(Path(path).read_text()))


class Stop(Exception):
    """SIGTERM or SIGINT: stop everything and exit."""


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def is_live(host: str, http_port: int, timeout: float = 5.0) -> bool:
    return http_status(f"http://{probe_host(host)}:{http_port}/v2/health/live", timeout)[0] == 200


class LivenessProbe:
    """Asks /v2/health/live every ``interval`` seconds in a thread of its own (a hung server must not hold up the
    watch on the processes); ``failures`` counts the failed answers in a row."""

    def __init__(self, host: str, http_port: int, interval: float):
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, http_port, interval), daemon=True)
        self._thread.start()

    def _run(self, host: str, http_port: int, interval: float) -> None:
        while not self._stop.wait(interval):
            self.failures = 0 if is_live(host, http_port) else self.failures + 1

    def stop(self) -> None:
        self._stop.set()


class Gateway:
    """The web gateway (python -m webui) as a child process of the supervisor."""

    def __init__(self, spec: GatewaySpec):
        self.spec = spec
        self.process: subprocess.Popen | None = None
        self.policy = RestartPolicy()
        self.restarts = 0
        self.gave_up = False
        self.next_start = 0.0

    def start(self) -> None:
        env = {**os.environ, **self.spec.env}
        Path(self.spec.log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(self.spec.log_file, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "webui"], cwd=REPO_ROOT, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.info("started the web gateway (pid %d) on %s:%d", self.process.pid, self.spec.host, self.spec.port)

    def check(self, now: float) -> None:
        """Restarts the gateway if it exited (bounded, with back-off)."""
        if self.gave_up:
            return
        if self.process is not None:
            code = self.process.poll()
            if code is None:
                return
            log.warning("the web gateway (pid %d) exited with code %s; log %s:\n%s", self.process.pid, code,
                        self.spec.log_file, tail(Path(self.spec.log_file), 10))
            self.process = None
            delay = self.policy.next_delay(now)
            if delay is None:
                log.error("the web gateway failed %d times within %.0f s: not restarting it", self.policy.max_restarts,
                          self.policy.window)
                self.gave_up = True
                return
            self.restarts += 1
            self.next_start = now + delay
        if now >= self.next_start:
            self.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        stop(self.process, timeout)
        log.info("stopped the web gateway (pid %d)", self.process.pid)
        self.process = None

    def state(self) -> dict:
        return {"pid": self.process.pid if self.process else None, "host": self.spec.host, "port": self.spec.port,
                "log": self.spec.log_file, "restarts": self.restarts, "gave_up": self.gave_up}


class Supervisor:
    def __init__(self, spec: SupervisorSpec):
        self.spec = spec
        self.cfg = spec.server_config()
        self.state_file = Path(spec.state_file)
        self.server: TritonServer | None = None
        self.stubs = []
        self.policy = RestartPolicy(spec.max_restarts, spec.restart_window)
        self.gateway = Gateway(GatewaySpec(**spec.gateway)) if spec.gateway else None
        self.status = "starting"
        self.restarts = 0
        self.recoveries: list[dict] = []
        self.fault: dict | None = None
        self.started_at = now_iso()
        self.ready_since: str | None = None
        self._stopping = False
        self._interruptible = False

    # state file ------------------------------------------------------------------------------------------------
    def write_state(self) -> None:
        cfg = self.cfg
        state = {
            "pid": os.getpid(), "state": self.status,
            "server_pid": self.server.process.pid if self.server and self.server.process else None,
            "host": cfg.host, "http_port": cfg.http_port, "grpc_port": cfg.grpc_port,
            "metrics_port": cfg.metrics_port, "model_repository": str(Path(cfg.model_repository).resolve()),
            "log": str(cfg.log_file), "supervisor_log": self.spec.info.get("supervisor_log"),
            "started_at": self.started_at, "ready_since": self.ready_since, "restarts": self.restarts,
            "max_restarts": self.policy.max_restarts, "restart_window_s": self.policy.window,
            "stubs": {s.name: s.pid for s in self.stubs}, "recoveries": self.recoveries[-20:],
            "gateway": self.gateway.state() if self.gateway else None, **self.spec.info,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.state_file)

    # signals ---------------------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self._stopping = True
        if self._interruptible:
            self._interruptible = False
            raise Stop(signal.Signals(signum).name)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < end:
            time.sleep(min(self.spec.poll_interval, max(0.0, end - time.monotonic())))

    # the loop --------------------------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        become_subreaper()
        log.info("supervisor (pid %d) starting tritonserver on %s (HTTP %d, gRPC %d, metrics %d), repository %s",
                 os.getpid(), self.cfg.host, self.cfg.http_port, self.cfg.grpc_port, self.cfg.metrics_port,
                 self.cfg.model_repository)
        self.write_state()
        try:
            while not self._stopping:
                if not self._start_server():
                    if not self._wait_before_restart():
                        break
                    continue
                reason = self._watch()
                if reason is None:  # asked to stop
                    break
                self._on_fault(reason)
                if not self._wait_before_restart():
                    break
            if not self._stopping and self.status == "failed":
                self._idle()  # keep the gateway (it tells the pages Triton is down) until asked to stop
        except Stop:
            pass
        finally:
            self._shutdown()
        return 0

    def _start_server(self) -> bool:
        self.status = "starting" if not self.restarts else "restarting"
        self.write_state()
        self.server = TritonServer(self.cfg)
        t0 = time.monotonic()
        try:
            self._interruptible = True
            self.server.start(timeout=self.spec.start_timeout)
            self._interruptible = False
        except (RuntimeError, TimeoutError, OSError) as err:
            self._interruptible = False
            log.error("tritonserver did not start: %s", err)
            if self.server.process is not None:
                self.server.kill()
            self.server = None
            if self.fault is None:
                self.fault = {"reason": f"start failed: {str(err).splitlines()[0]}", "detected_at": now_iso(),
                              "t0": time.monotonic(), "stop_s": 0.0}
            return False
        self.stubs = stubs_of(self.server.process.pid)
        self.status = "ready"
        self.ready_since = now_iso()
        startup_s = time.monotonic() - t0
        if self.fault is not None:
            recovery = {"reason": self.fault["reason"], "detected_at": self.fault["detected_at"],
                        "stop_s": round(self.fault["stop_s"], 2), "start_s": round(startup_s, 2),
                        "recovered_s": round(time.monotonic() - self.fault["t0"], 2), "ready_at": self.ready_since}
            self.recoveries.append(recovery)
            self.fault = None
            log.info("tritonserver ready again (pid %d) %.1f s after the fault (start %.1f s)",
                     self.server.process.pid, recovery["recovered_s"], startup_s)
        else:
            log.info("tritonserver ready (pid %d) in %.1f s; stubs: %s", self.server.process.pid, startup_s,
                     ", ".join(f"{s.name} ({s.pid})" for s in self.stubs) or "none")
        self.write_state()
        return True

    def _watch(self) -> str | None:
        """Returns the reason the server must be restarted, or None when asked to stop."""
        spec, server = self.spec, self.server
        next_reap = time.monotonic() + 5.0
        liveness = LivenessProbe(self.cfg.host, self.cfg.http_port, spec.liveness_interval)
        try:
            while not self._stopping:
                now = time.monotonic()
                code = server.process.poll()
                if code is not None:
                    return f"tritonserver (pid {server.process.pid}) exited with code {code}"
                dead = dead_stubs(self.stubs)
                if dead:
                    return "Python-backend stub " + ", ".join(f"{s.name} (pid {s.pid})" for s in dead) + " died"
                if liveness.failures >= spec.liveness_failures:
                    return f"tritonserver did not answer /v2/health/live {liveness.failures} times in a row"
                self._check_gateway(now)
                if now >= next_reap:
                    self._reap()
                    next_reap = now + 5.0
                time.sleep(spec.poll_interval)
            return None
        finally:
            liveness.stop()

    def _check_gateway(self, now: float) -> None:
        if self.gateway:
            before = (self.gateway.process.pid if self.gateway.process else None, self.gateway.restarts)
            self.gateway.check(now)
            if before != (self.gateway.process.pid if self.gateway.process else None, self.gateway.restarts):
                self.write_state()

    def _reap(self) -> None:
        keep = {p.process.pid for p in (self.server, self.gateway) if p is not None and p.process is not None}
        reap_zombies(keep)

    def _on_fault(self, reason: str) -> None:
        t0 = time.monotonic()
        log.warning("%s: restarting tritonserver", reason)
        self.status = "restarting"
        self.write_state()
        removed = self.server.kill(known_stubs=self.stubs) if self.server else []
        self._reap()
        self.server, self.stubs = None, []
        log.info("killed tritonserver's process group in %.2f s%s", time.monotonic() - t0,
                 f"; removed {len(removed)} shared-memory region(s)" if removed else "")
        self.fault = {"reason": reason, "detected_at": now_iso(), "t0": t0, "stop_s": time.monotonic() - t0}

    def _wait_before_restart(self) -> bool:
        delay = self.policy.next_delay(time.monotonic())
        if delay is None:
            self.status = "failed"
            log.error("gave up: %d restarts within %.0f s; the server stays down (python -m serving down, then up)",
                      self.policy.max_restarts, self.policy.window)
            self.write_state()
            return False
        self.restarts += 1
        self.write_state()
        if delay:
            log.info("restart %d in %.0f s", self.restarts, delay)
            self._sleep(delay)
        return not self._stopping

    def _idle(self) -> None:
        while not self._stopping:
            self._check_gateway(time.monotonic())
            time.sleep(self.spec.poll_interval * 5)

    def _shutdown(self) -> None:
        self.status = "stopping"
        with _ignoring_signals():
            try:
                self.write_state()
                if self.gateway:
                    self.gateway.stop()
                if self.server is not None and self.server.process is not None:
                    pid = self.server.process.pid
                    self.server.stop()  # graceful: requests in flight are answered
                    remove_shm_regions(s.shm_region for s in self.stubs)
                    log.info("stopped tritonserver (pid %d)", pid)
                self._reap()
            finally:
                self.state_file.unlink(missing_ok=True)
                log.info("supervisor (pid %d) exiting", os.getpid())


class _ignoring_signals:
    def __enter__(self):
        self.saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGINT)}

    def __exit__(self, *exc):
        for s, handler in self.saved.items():
            signal.signal(s, handler)


def main(spec_path: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    return Supervisor(SupervisorSpec.read(Path(spec_path))).run()
