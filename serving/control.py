"""``up``, ``down`` and ``status`` of the local Triton server for the default model and the web gateway.

``up`` builds the model repository unless it holds the export of the checkpoint (see stale_because), then leaves
a small supervisor running in the background (its pid in <run dir>/triton.json). The supervisor starts tritonserver
and, once it is ready, the web gateway (python -m webui); it restarts tritonserver when the server exits or one of its
Python-backend processes dies (Triton does not restart those itself), a bounded number of times with back-off, and the
gateway when it exits. ``up`` returns when both are ready and prints how to call them. ``down`` stops all of it;
``status`` tells whether it is ready and how many restarts there were.

The functions take the parsed settings of ``serving.cli.SETTINGS`` (``SETTINGS.defaults(...)`` for a caller of its
own); they read no environment variable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .processes import http_status, is_ours, port_in_use, probe_host, stop
from .server import REPO_ROOT, ServerConfig, is_ready, tail
from .supervisor import SupervisorSpec

TRAINED_DEFAULT = REPO_ROOT / "models" / "default"
TINY_DEFAULT = REPO_ROOT / "build" / "checkpoints" / "tiny-crf"
# Everything that shapes the exported graph and its configs (the code the export imports) and the pinned versions
# of what builds and runs it.
BUILD_INPUTS = ("export", "ner_pipeline", "ner_model", "model_repository", "requirements")
STATE_FILE = "triton.json"
BUILD_RECORD = ".fingerprint"
DEFAULT_RUN_DIR = REPO_ROOT / ".run"


def default_checkpoint() -> Path:
    """The trained model when the repository ships one, else the small generated model."""
    if (TRAINED_DEFAULT / "config.json").exists():
        return TRAINED_DEFAULT
    if not (TINY_DEFAULT / "config.json").exists():
        print(f"no trained default model; generating the small stand-in model in {TINY_DEFAULT}", flush=True)
        subprocess.run([sys.executable, "-m", "export.synthetic", "--output", str(TINY_DEFAULT)], check=True,
                       cwd=REPO_ROOT)
    return TINY_DEFAULT


def build_fingerprint(checkpoint: Path, options: dict[str, str]) -> str:
    """What a build depends on: the checkpoint's files, the export's effective options and the code that shapes it."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file())
    for folder in BUILD_INPUTS:
        files += sorted(p for p in (REPO_ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(path.anchor)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def repository_files(repository: Path) -> dict[str, str]:
    """The sha256 of every file in the repository by relative path, but the build record and Python's caches (the
    Python backend writes those when it loads a model)."""
    found = {}
    for path in sorted(repository.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.name != BUILD_RECORD:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            found[str(path.relative_to(repository))] = digest.hexdigest()
    return found


def stale_because(repository: Path, fingerprint: str) -> str | None:
    """Why ``repository`` is not the build with this ``fingerprint`` (see build_fingerprint), or None when it is.

    The build record holds the fingerprint of what the build came from and the hashes of the files it wrote: an
    export into the same folder by hand (python -m export OTHER --output REPOSITORY) changes the files, not the
    record."""
    if not repository.exists():
        return "it does not exist yet"
    try:
        record = json.loads((repository / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        return "it holds no record of a build by up"
    if not isinstance(record, dict):
        return "it holds no record of a build by up"
    if record.get("files") != repository_files(repository):
        return f"its files changed since up built it from {record.get('checkpoint')} (another export into it?)"
    if record.get("fingerprint") != fingerprint:
        return "the checkpoint, the export options or the code changed since its build"
    return None


def ensure_repository(checkpoint: Path, repository: Path, export_args: list[str], options: dict[str, str]) -> bool:
    """Exports ``checkpoint`` into ``repository`` unless it holds the export of the same checkpoint, code and export
    ``options`` (the effective ones, variables included: ``export_args`` alone would miss NER_EXPORT_*). Returns
    False when the export failed (it has printed why)."""
    fingerprint = build_fingerprint(checkpoint, options)
    reason = stale_because(repository, fingerprint)
    if reason is None:
        print(f"model repository {repository} is up to date", flush=True)
        return True
    print(f"building model repository {repository} from {checkpoint}: {reason}", flush=True)
    record = repository / BUILD_RECORD
    record.unlink(missing_ok=True)  # a failed export leaves no record that vouches for what it left behind
    done = subprocess.run([sys.executable, "-m", "export", str(checkpoint), "--output", str(repository),
                           *export_args], cwd=REPO_ROOT)
    if done.returncode != 0:
        return False
    record.write_text(json.dumps({"checkpoint": str(checkpoint.resolve()),
                                  "fingerprint": fingerprint,
                                  "files": repository_files(repository)}, indent=1))
    return True


# --------------------------------------------------------------------------------------------------- run state

def read_state(directory: Path) -> dict | None:
    try:
        return json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def supervisor_alive(state: dict) -> bool:
    return is_ours(state.get("pid"), "serving supervise")


def running(directory: Path) -> dict | None:
    """The state of the running supervisor, else None."""
    state = read_state(directory)
    return state if state is not None and supervisor_alive(state) else None


def leftovers(state: dict | None) -> list[tuple[str, int]]:
    """(what, pid) of each process a supervisor that was killed (not stopped) left running."""
    found = []
    if state and is_ours(state.get("server_pid"), "tritonserver"):
        found.append(("tritonserver", state["server_pid"]))
    gateway = ((state or {}).get("gateway") or {}).get("pid")
    if is_ours(gateway, "-m webui"):
        found.append(("the web gateway", gateway))
    return found


def clean_leftovers(directory: Path, state: dict | None) -> bool:
    """Stops what a supervisor that was killed (not stopped) left: its server and gateway; removes the state file.
    Returns whether anything was running."""
    found = leftovers(state)
    for what, pid in found:
        print(f"stopping the orphaned {what} (pid {pid})")
        stop(pid, 30.0, group=what == "tritonserver")
    (directory / STATE_FILE).unlink(missing_ok=True)
    return bool(found)


def gateway_url(state: dict) -> str | None:
    gateway = state.get("gateway")
    if not gateway:
        return None
    host = probe_host(gateway["host"])
    return f"http://{'[' + host + ']' if ':' in host else host}:{gateway['port']}/"


def stop_command(directory: Path) -> str:
    """The command that stops the server of run directory ``directory`` (run from the project's folder)."""
    directory = Path(directory).resolve()
    if directory == DEFAULT_RUN_DIR.resolve():
        return "bash scripts/down.sh"
    return f"bash scripts/down.sh --run-dir {shlex.quote(str(directory))}"


def what_runs(state: dict) -> dict:
    """What a running supervisor serves, in the terms of up's request (see requested)."""
    gateway = state.get("gateway")
    return {"checkpoint": state.get("checkpoint"), "model_repository": state["model_repository"],
            "host": state["host"], "http_port": state["http_port"], "grpc_port": state["grpc_port"],
            "metrics_port": state["metrics_port"],
            "gateway": f"{gateway['host']}:{gateway['port']}" if gateway else None,
            "export_options": state.get("export_options")}


def requested(args: argparse.Namespace, gateway_address: tuple[str, int] | None,
              export_options: dict[str, str]) -> dict:
    """What ``up`` is asked to serve; with --no-build, no checkpoint (the repository is served as it is)."""
    checkpoint = None
    if args.build:
        checkpoint = Path(args.checkpoint) if args.checkpoint else (
            TRAINED_DEFAULT if (TRAINED_DEFAULT / "config.json").exists() else TINY_DEFAULT)
    return {"checkpoint": str(checkpoint.resolve()) if checkpoint else None,
            "model_repository": str(Path(args.model_repository).resolve()), "host": args.host,
            "http_port": args.http_port, "grpc_port": args.grpc_port, "metrics_port": args.metrics_port,
            "gateway": f"{gateway_address[0]}:{gateway_address[1]}" if gateway_address else None,
            "export_options": export_options if args.build else None}


REQUEST_WORDS = {"checkpoint": "checkpoint", "model_repository": "--model-repository", "host": "--host",
                 "http_port": "--http-port", "grpc_port": "--grpc-port", "metrics_port": "--metrics-port",
                 "gateway": "the web gateway", "export_options": "the export's options"}


def differences(running: dict, request: dict) -> list[str]:
    """How ``request`` differs from what runs; --no-build asks for no particular checkpoint or export options."""
    found = []
    for key, word in REQUEST_WORDS.items():
        asked, runs = request[key], running[key]
        if asked is None and key in ("checkpoint", "export_options") or asked == runs:
            continue
        if key == "export_options" and runs:
            found += [f"export option {name} {asked.get(name)} (running: {runs.get(name)})"
                      for name in sorted(set(asked) | set(runs)) if asked.get(name) != runs.get(name)]
        else:
            none = "off" if key == "gateway" else "none"
            found.append(f"{word} {none if asked is None else asked} (running: {none if runs is None else runs})")
    return found


def usage(state: dict, directory: Path) -> str:
    host, http, grpc = state["host"], state["http_port"], state["grpc_port"]
    lines = [
        f"Triton is serving the NER ensembles `ner` (INT8) and `ner_fp32` (tritonserver pid {state.get('server_pid')}, "
        f"supervisor pid {state['pid']}):",
        f"  HTTP    http://{host}:{http}    gRPC {host}:{grpc}    metrics http://{host}:{state['metrics_port']}/metrics",
        f"  model   {state.get('checkpoint') or state['model_repository']}",
        f"  logs    {state['log']}, {state.get('supervisor_log')}",
    ]
    url = gateway_url(state)
    if url:
        lines.append(f"  Web UI  {url}    (gateway pid {state['gateway']['pid']}, health {url}healthz, log "
                     f"{state['gateway']['log']})")
    lines += [
        "Try:",
        f"  curl -s http://{host}:{http}/v2/models/ner/infer -H 'Content-Type: application/json' \\",
        "    -d '{\"inputs\":[{\"name\":\"TEXT\",\"datatype\":\"BYTES\",\"shape\":[1,1],"
        "\"data\":[\"张三在北京的清华大学读书。\"]}]}'",
        f"Stop with: {stop_command(directory)}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- commands

def up(args: argparse.Namespace, gateway_address: tuple[str, int] | None, export_options: dict[str, str]) -> int:
    """Starts the supervisor (and, with ``gateway_address`` (host, port), the web gateway); builds the repository
    first unless ``args.build`` is off (``export_options``: see ensure_repository). When a supervisor of the run
    directory runs already: prints what it serves, and returns 1 when that differs from this request."""
    directory = Path(args.run_dir)
    state = running(directory)
    if state is None:
        clean_leftovers(directory, read_state(directory))
    if state and state.get("state") == "failed":
        print("the supervisor gave up restarting Triton; starting afresh")
        down(directory)
        state = None
    if state:
        different = differences(what_runs(state), requested(args, gateway_address, export_options))
        if different:
            print(already_running(state, directory, different), file=sys.stderr)
            return 1
        print(f"already running with run directory {directory}:")
        print(usage(state, directory))
        return 0
    repository = Path(args.model_repository)
    checkpoint = None
    if not args.build:
        if not (repository / "ner" / "config.pbtxt").exists():
            print(f"error: --no-build, and {repository} holds no model repository", file=sys.stderr)
            return 1
    else:
        checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
        if not ensure_repository(checkpoint, repository, list(args.export_args), export_options):
            return 1

    ports = [("--http-port", args.host, args.http_port), ("--grpc-port", args.host, args.grpc_port),
             ("--metrics-port", args.host, args.metrics_port)]
    if gateway_address:
        ports.append(("the web gateway's port", *gateway_address))
    busy = [f"{probe_host(host)}:{port} ({name})" for name, host, port in ports if port_in_use(host, port)]
    if busy:
        print(f"error: another program listens on {', '.join(busy)}; choose other ports", file=sys.stderr)
        return 1

    directory.mkdir(parents=True, exist_ok=True)
    cfg = ServerConfig(model_repository=repository.resolve(), host=args.host, http_port=args.http_port,
                       grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                       log_file=(directory / "tritonserver.log").resolve())
    gateway = None
    if gateway_address:
        protocol = args.triton_protocol or "grpc"
        local = f"{probe_host(args.host)}:{args.grpc_port if protocol == 'grpc' else args.http_port}"
        env = {"NER_TRITON_URL": args.triton_url or local}
        if args.triton_protocol or not args.triton_url:
            env["NER_TRITON_PROTOCOL"] = protocol
        gateway = {"host": gateway_address[0], "port": gateway_address[1],
                   "log_file": str((directory / "webui.log").resolve()), "env": env}
    supervisor_log = (directory / "supervisor.log").resolve()
    spec = SupervisorSpec(server=SupervisorSpec.server_dict(cfg), state_file=str((directory / STATE_FILE).resolve()),
                          start_timeout=args.timeout, max_restarts=args.max_restarts,
                          restart_window=args.restart_window, gateway=gateway,
                          info={"checkpoint": str(checkpoint.resolve()) if checkpoint else None,
                                "export_options": export_options if checkpoint else None,
                                "supervisor_log": str(supervisor_log)})
    spec_path = directory / "supervisor-spec.json"
    spec.write(spec_path)
    with open(supervisor_log, "ab") as out:
        supervisor = subprocess.Popen([sys.executable, "-m", "serving", "supervise", str(spec_path.resolve())],
                                      cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
    print(f"started the supervisor (pid {supervisor.pid}); waiting for Triton (log {cfg.log_file})", flush=True)
    problem = wait_up(directory, supervisor, args.timeout, args.gateway_timeout if gateway else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        print(f"--- {supervisor_log} (last lines) ---\n{tail(supervisor_log, 15)}", file=sys.stderr)
        if gateway:
            print(f"--- {gateway['log_file']} (last lines) ---\n{tail(Path(gateway['log_file']), 10)}", file=sys.stderr)
        stop(supervisor, 60.0)
        clean_leftovers(directory, read_state(directory))
        return 1
    print(usage(read_state(directory), directory))
    return 0


def already_running(state: dict, directory: Path, different: list[str]) -> str:
    runs = what_runs(state)
    host = probe_host(runs["host"])
    url = gateway_url(state)
    serves = [f"checkpoint {runs['checkpoint'] or '(none: --no-build)'}", f"repository {runs['model_repository']}",
              f"HTTP {host}:{runs['http_port']}", f"gRPC {host}:{runs['grpc_port']}",
              f"metrics {host}:{runs['metrics_port']}"] + ([f"web UI {url}"] if url else [])
    return "\n".join([
        f"error: a server is already running with run directory {Path(directory).resolve()} (supervisor pid "
        f"{state['pid']}); it serves",
        "  " + ", ".join(serves),
        "and this request differs: " + "; ".join(different),
        f"Stop it with: {stop_command(directory)}",
        "or start this one with another --run-dir (and ports of its own).",
    ])


def wait_up(directory: Path, supervisor: subprocess.Popen, timeout: float, gateway_timeout: float | None) -> str | None:
    """Waits until the supervisor reports Triton ready and, with a gateway, its /healthz says 200."""
    deadline = time.monotonic() + timeout
    gateway_deadline = None
    while True:
        if supervisor.poll() is not None:
            return f"the supervisor exited with code {supervisor.returncode}"
        state = read_state(directory) or {}
        if state.get("state") == "failed":
            return "Triton could not be started (the supervisor gave up)"
        if state.get("state") == "ready":
            if gateway_timeout is None:
                return None
            gateway_deadline = gateway_deadline or time.monotonic() + gateway_timeout
            status, body = http_status(gateway_url(state) + "healthz")
            if status == 200:
                return None
            if time.monotonic() > gateway_deadline:
                return f"the web gateway's /healthz did not report Triton ready: {status or ''} {body}".strip()
        elif time.monotonic() > deadline:
            return f"Triton not ready after {timeout:.0f} s"
        time.sleep(0.3)


def down(directory: Path) -> int:
    state = read_state(directory)
    stopped = False
    if state and supervisor_alive(state):
        # The supervisor stops the gateway, then Triton (gracefully, within Triton's own exit timeout), then exits.
        stop(state["pid"], 90.0)
        print(f"stopped the supervisor (pid {state['pid']}), Triton" + (" and the web gateway" if state.get("gateway") else ""))
        stopped = True
    stopped = clean_leftovers(directory, read_state(directory)) or stopped
    if not stopped:
        print("Triton is not running")
    return 0


def status(directory: Path, as_json: bool) -> int:
    state = running(directory)
    if not state:
        left = [f"{what} (pid {pid})" for what, pid in leftovers(read_state(directory))]
        if as_json:
            print(json.dumps({"state": "stopped", "leftovers": left}, indent=1))
        else:
            print("Triton is not running" if not left else
                  f"the supervisor is not running, but {' and '.join(left)} are still running: "
                  f"{stop_command(directory)} stops them")
        return 1
    ready = state.get("state") == "ready" and is_ready(probe_host(state["host"]), state["http_port"])
    if as_json:
        print(json.dumps(state, indent=1))
        return 0 if ready else 1
    if ready:
        print(usage(state, directory))
    else:
        print(f"Triton is {state.get('state', 'running')} but not ready (supervisor pid {state['pid']}); log "
              f"{state.get('supervisor_log')}")
    line = f"restarts: {state.get('restarts', 0)} (at most {state['max_restarts']} within " \
           f"{state['restart_window_s']:.0f} s)"
    if state.get("recoveries"):
        last = state["recoveries"][-1]
        line += f"; last: {last['reason']} at {last['detected_at']}, ready again {last['recovered_s']} s later"
    print(line)
    gateway = state.get("gateway")
    if gateway and (gateway.get("restarts") or gateway.get("gave_up")):
        print(f"web gateway restarts: {gateway['restarts']}" + (" (gave up)" if gateway.get("gave_up") else ""))
    return 0 if ready else 1
