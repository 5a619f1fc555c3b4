"""Starts, waits for and stops a local tritonserver process."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .layout import ServerLayout, ensure_layout
from .processes import free_port, http_status, port_in_use, stop

__all__ = ["REPO_ROOT", "ServerConfig", "TritonServer", "free_port", "is_ready", "tail"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerConfig:
    model_repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    cache_bytes: int = 64 * 1024 * 1024
    log_file: Path | None = None
    layout_root: Path = REPO_ROOT / ".triton"
    extra_args: list[str] = field(default_factory=list)
    # The model-repository API (index, load, unload) and the shared-memory API (registering /dev/shm regions) answer
    # only requests carrying a key drawn at random for each start: no client of ours uses them. Triton takes it on
    # its command line only, readable in /proc by local users: it keeps remote callers out.
    restrict_admin_apis: bool = True


def ascii_repository_path(repository: Path) -> Path:
    """The repository's path, through an ASCII-named symlink in the temporary folder when the path is not ASCII.

    The Python-backend stub embeds an interpreter whose file-system encoding is ASCII whatever the locale
    (PYTHONUTF8 and LC_ALL do not reach it), so a model folder under a non-ASCII path fails to load with
    UnicodeEncodeError. The symlink gives every model an ASCII path; the files stay where they are."""
    repository = Path(repository).resolve()
    if str(repository).isascii():
        return repository
    link = Path(tempfile.gettempdir()) / f"ner-model-repository-{hashlib.sha256(bytes(repository)).hexdigest()[:16]}"
    if not str(link).isascii():
        raise RuntimeError(f"model repository {repository} has a non-ASCII path, and so has the temporary folder "
                           f"{link.parent}; move the repository or set TMPDIR to an ASCII path")
    if not (link.is_symlink() and link.resolve() == repository):
        link.unlink(missing_ok=True)
        try:
            link.symlink_to(repository, target_is_directory=True)
        except FileExistsError:  # another server made it meanwhile
            if link.resolve() != repository:
                raise
    return link


def server_command(cfg: ServerConfig, layout: ServerLayout) -> list[str]:
    return [
        str(layout.binary),
        f"--model-repository={ascii_repository_path(cfg.model_repository)}",
        f"--backend-directory={layout.backends}",
        f"--cache-directory={layout.caches}",
        f"--cache-config=local,size={cfg.cache_bytes}",
        f"--http-address={cfg.host}",
        f"--http-port={cfg.http_port}",
        f"--grpc-address={cfg.host}",
        f"--grpc-port={cfg.grpc_port}",
        f"--metrics-address={cfg.host}",
        f"--metrics-port={cfg.metrics_port}",
        # No loading or unloading of models over the API: a served repository only changes by a restart.
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--exit-on-error=true",
        *restricted_api_args(cfg),
        *cfg.extra_args,
    ]


ADMIN_APIS = "model-repository,shared-memory"


def restricted_api_args(cfg: ServerConfig) -> list[str]:
    if not cfg.restrict_admin_apis:
        return []
    key = secrets.token_hex(16)
    return [f"--http-restricted-api={ADMIN_APIS}:triton-admin-key={key}",
            f"--grpc-restricted-protocol={ADMIN_APIS}:triton-admin-key={key}"]


class TritonServer:
    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{self.cfg.host}:{self.cfg.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.cfg.host}:{self.cfg.grpc_port}"

    def start(self, timeout: float = 120.0) -> "TritonServer":
        busy = [port for port in (self.cfg.http_port, self.cfg.grpc_port, self.cfg.metrics_port)
                if port_in_use(self.cfg.host, port)]
        if busy:
            # Another server answering on our port would otherwise pass for ours in the readiness check.
            raise RuntimeError(f"port(s) {busy} on {self.cfg.host} already in use; choose others")
        layout = ensure_layout(self.cfg.layout_root)
        log_path = self.cfg.log_file or Path(self.cfg.model_repository).resolve().parent / "tritonserver.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
        self.process = subprocess.Popen(server_command(self.cfg, layout), stdout=log, stderr=subprocess.STDOUT,
                                        env=layout.environment(), start_new_session=True)
        log.close()
        self.log_path = log_path
        self.wait_ready(timeout)
        return self

    def is_ready(self) -> bool:
        return is_ready(self.cfg.host, self.cfg.http_port)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode}; "
                                   f"log {self.log_path}:\n{tail(self.log_path)}")
            if self.is_ready() and self.process.poll() is None:
                return
            time.sleep(0.2)
        raise TimeoutError(f"tritonserver not ready after {timeout:.0f} s; log {self.log_path}:\n{tail(self.log_path)}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            stop(self.process, timeout, group=True)
            self.process = None

    def kill(self, timeout: float = 10.0, known_stubs=()) -> list[str]:
        """Stops the server at once (SIGKILL to its process group, stubs included), without waiting for requests in
        flight: for a server that can no longer answer them (a dead stub makes a graceful stop hang for Triton's
        exit timeout). Removes the shared-memory regions the stubs leave behind (those found now and those of
        ``known_stubs``, e.g. recorded when the server became ready: a dead stub no longer shows its own); returns
        their names."""
        if self.process is None:
            return []
        from .processes import kill_group, remove_shm_regions, stubs_of

        stubs = {s.pid: s for s in (*known_stubs, *stubs_of(self.process.pid))}
        kill_group(self.process.pid, list(stubs), timeout)
        self.process.wait()
        self.process = None
        return remove_shm_regions({s.shm_region for s in stubs.values()})

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def is_ready(host: str, http_port: int) -> bool:
    return http_status(f"http://{host}:{http_port}/v2/health/ready", timeout=1)[0] == 200


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
