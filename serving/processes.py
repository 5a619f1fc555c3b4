"""The project's one process helper: whether a process runs (and is the one we think), stopping a process or a process
group (SIGTERM, then SIGKILL after a timeout), free and busy ports, waiting for an HTTP endpoint; and what the
supervisor reads from /proc about a running tritonserver: its Python-backend stub processes (one per model instance),
whether each is still alive, and the shared-memory regions they use."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

STUB_BINARY = "triton_python_backend_stub"
SHM_REGION = re.compile(r"^triton_python_backend_shm_region_[0-9a-fA-F-]+$")
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Stub:
    pid: int
    name: str  # the model instance it serves, e.g. tokenizer_0_0
    start_ticks: int  # start time in clock ticks since boot: tells a reused pid apart
    shm_region: str  # its /dev/shm region, e.g. triton_python_backend_shm_region_<uuid>


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...], or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def is_running(pid: int, start_ticks: int | None = None) -> bool:
    """Alive and not a zombie (a killed stub stays a zombie of tritonserver, which never reaps it); with
    ``start_ticks``, also the same process (not a new one that got the pid)."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X", "x"):
        return False
    return start_ticks is None or int(fields[19]) == start_ticks


def is_ours(pid: int | None, marker: str) -> bool:
    """``pid`` runs and its command line holds ``marker`` (a pid file may outlive its process, and pids are reused)."""
    return bool(pid) and is_running(pid) and marker in " ".join(cmdline(pid))


def stop(process: int | subprocess.Popen, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM, then SIGKILL to what still runs after ``timeout`` seconds; a Popen is reaped.

    ``group``: the SIGKILL goes to the whole process group, whether or not its leader stopped in time: a server's
    children (Triton's stubs) must not outlive it. The SIGTERM goes to the leader alone: signalling the whole group at
    once leaves tritonserver waiting on stubs that are already dead."""
    popen = process if isinstance(process, subprocess.Popen) else None
    pid = popen.pid if popen else process

    def alive() -> bool:
        return popen.poll() is None if popen else is_running(pid)

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        time.sleep(0.1)
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        elif alive():
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if popen:
        popen.wait()


_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A free loopback port that this process was not given before: the kernel may offer a just-closed port again,
    and tritonserver refuses to start when two of its listeners get the same port."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def probe_host(host: str) -> str:
    """The address that reaches a server bound to ``host`` (a wildcard address: the loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host.strip("[]")


def port_in_use(host: str, port: int) -> bool:
    try:
        socket.create_connection((probe_host(host), port), timeout=1).close()
        return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 5.0) -> tuple[int | None, str]:
    """(status, body) of a GET, or (None, why there was no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except OSError as err:
        return None, str(err)


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> str | None:
    """Waits until a GET of ``url`` answers 200; returns None then, else why not (``process`` exited, or the last
    answer when ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            return f"{' '.join(map(str, process.args))} exited with code {process.returncode}"
        status, body = http_status(url, timeout=1)
        if status == 200:
            return None
        if time.monotonic() > deadline:
            return f"{url} did not answer 200 within {timeout:.0f} s: {status or ''} {body[:200]}".strip()
        time.sleep(0.3)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def stubs_of(server_pid: int) -> list[Stub]:
    """The Python-backend stubs tritonserver runs, as found now (call it once the server is ready)."""
    found = []
    for pid in children(server_pid):
        argv, fields = cmdline(pid), stat_fields(pid)
        if not argv or fields is None or not argv[0].endswith(STUB_BINARY):
            continue
        # argv: stub model.py shm_region shm_default_size shm_growth_size parent_pid backend_dir ipc_timeout
        #       instance_name kind
        name = argv[-2] if len(argv) >= 3 else "?"
        region = next((a for a in argv if SHM_REGION.match(a)), "")
        found.append(Stub(pid, name, int(fields[19]), region))
    return sorted(found, key=lambda s: s.name)


def dead_stubs(stubs: list[Stub]) -> list[Stub]:
    return [s for s in stubs if not is_running(s.pid, s.start_ticks)]


def remove_shm_regions(regions) -> list[str]:
    """Unlinks the stubs' /dev/shm regions that a killed server left behind; returns those removed."""
    removed = []
    for region in regions:
        if region and SHM_REGION.match(region):
            try:
                os.unlink(f"/dev/shm/{region}")
                removed.append(region)
            except OSError:
                pass
    return removed


def kill_group(pgid: int, members: list[int], timeout: float = 10.0) -> None:
    """SIGKILL to the whole process group; waits (up to ``timeout``) until none of ``members`` runs."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_running(p) for p in members):
        time.sleep(0.05)


def become_subreaper() -> bool:
    """Orphaned descendants (stubs whose tritonserver died) are re-parented to this process, which reaps them."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_zombies(keep: set[int]) -> None:
    """Reaps this process's zombie children other than ``keep`` (which subprocess.Popen objects own)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in keep:
            continue
        fields = stat_fields(int(entry.name))
        if fields and fields[0] == "Z" and int(fields[1]) == me:
            try:
                os.waitpid(int(entry.name), os.WNOHANG)
            except ChildProcessError:
                pass


def listening_sockets(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by ``pids``, from /proc/net/tcp and tcp6."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = cols[1].split(":")
            found.append((_address(address, width), int(port, 16)))
    return sorted(set(found))


def _address(hex_address: str, width: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_address)
    if width == 8:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6: four 32-bit words, each in host (little-endian) order; an IPv4-mapped address (gRPC binds
    # 127.0.0.1 as ::ffff:127.0.0.1) reads as the IPv4 one.
    address = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return str(address.ipv4_mapped or address)


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in tree:
            continue
        tree.append(current)
        todo += children(current)
    return tree
