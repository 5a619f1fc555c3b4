"""python -m serving up|down|status — the local Triton server for the default model, and the web gateway.

``up`` builds the model repository if the checkpoint or the project's code changed since the last build, then leaves
a small supervisor running in the background (its pid in .run/triton.json). The supervisor starts tritonserver on
127.0.0.1 and, once it is ready, the web gateway (python -m webui); it restarts tritonserver when the server exits or
one of its Python-backend processes dies (Triton does not restart those itself), a bounded number of times with
back-off, and the gateway when it exits. ``up`` returns when both are ready and prints how to call them. ``down``
stops all of it; ``status`` tells whether it is ready and how many restarts there were. Every flag has an environment
variable; the gateway's settings are its own NER_WEBUI_* variables (webui/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .processes import cmdline, is_running
from .server import REPO_ROOT, ServerConfig, is_ready, port_in_use, stop_process_group, tail
from .supervisor import SupervisorSpec, probe_host

RUN_DIR = REPO_ROOT / ".run"
PID_FILE = RUN_DIR / "triton.json"
TRAINED_DEFAULT = REPO_ROOT / "models" / "default"
TINY_DEFAULT = REPO_ROOT / "build" / "checkpoints" / "tiny-crf"
BUILD_INPUTS = ("export", "ner_pipeline", "model_repository")


def default_checkpoint() -> Path:
    """The trained model when the repository ships one, else the small generated model."""
    if (TRAINED_DEFAULT / "config.json").exists():
        return TRAINED_DEFAULT
    if not (TINY_DEFAULT / "config.json").exists():
        print(f"no trained default model; generating the small stand-in model in {TINY_DEFAULT}", flush=True)
        subprocess.run([sys.executable, "-m", "export.synthetic", "--output", str(TINY_DEFAULT)], check=True,
                       cwd=REPO_ROOT)
    return TINY_DEFAULT


def build_fingerprint(checkpoint: Path, export_args: list[str]) -> str:
    digest = hashlib.sha256(" ".join(export_args).encode())
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file())
    for folder in BUILD_INPUTS:
        files += sorted(p for p in (REPO_ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(path.anchor)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_repository(checkpoint: Path, repository: Path, export_args: list[str]) -> None:
    stamp = repository / ".fingerprint"
    fingerprint = build_fingerprint(checkpoint, export_args)
    if stamp.exists() and stamp.read_text() == fingerprint:
        print(f"model repository {repository} is up to date", flush=True)
        return
    subprocess.run([sys.executable, "-m", "export", str(checkpoint), "--output", str(repository), *export_args],
                   check=True, cwd=REPO_ROOT)
    stamp.write_text(fingerprint)


# --------------------------------------------------------------------------------------------------- run state

def run_dir(args) -> Path:
    return Path(getattr(args, "run_dir", None) or os.environ.get("NER_RUN_DIR") or RUN_DIR)


def read_state(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "triton.json").read_text())
    except (OSError, ValueError):
        return None


def is_ours(pid: int | None, marker: str) -> bool:
    """``pid`` runs and its command line holds ``marker`` (a pid file may outlive its process, and pids are reused)."""
    return bool(pid) and is_running(pid) and marker in " ".join(cmdline(pid))


def supervisor_alive(state: dict) -> bool:
    marker = "serving supervise" if state.get("supervisor") else "tritonserver"
    return is_ours(state.get("pid"), marker)


def running(directory: Path = RUN_DIR) -> dict | None:
    """The state of the running supervisor (or of a server started by an older `up`), else None."""
    state = read_state(directory)
    return state if state is not None and supervisor_alive(state) else None


def leftovers(state: dict | None) -> list[str]:
    """What a supervisor that was killed (not stopped) left running."""
    found = []
    if state and state.get("supervisor") and is_ours(state.get("server_pid"), "tritonserver"):
        found.append(f"tritonserver (pid {state['server_pid']})")
    gateway = ((state or {}).get("gateway") or {}).get("pid")
    if is_ours(gateway, "-m webui"):
        found.append(f"the web gateway (pid {gateway})")
    return found


def clean_leftovers(directory: Path, state: dict | None) -> bool:
    """Stops what a supervisor that was killed (not stopped) left: its server and gateway; removes the state file.
    Returns whether anything was running."""
    stopped = False
    if state:
        if state.get("supervisor") and is_ours(state.get("server_pid"), "tritonserver"):
            print(f"stopping the orphaned tritonserver (pid {state['server_pid']})")
            stop_process_group(state["server_pid"])
            stopped = True
        gateway = (state.get("gateway") or {}).get("pid")
        if is_ours(gateway, "-m webui"):
            print(f"stopping the orphaned web gateway (pid {gateway})")
            stop_pid(gateway)
            stopped = True
    (directory / "triton.json").unlink(missing_ok=True)
    return stopped


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_running(pid):
        time.sleep(0.1)
    if is_running(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def gateway_url(state: dict) -> str | None:
    gateway = state.get("gateway")
    if not gateway:
        return None
    host = probe_host(gateway["host"])
    return f"http://{'[' + host + ']' if ':' in host else host}:{gateway['port']}/"


def usage(state: dict) -> str:
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
        "Stop with: bash scripts/down.sh",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- commands

def cmd_up(args) -> int:
    directory = run_dir(args)
    state = running(directory)
    if state is None:
        clean_leftovers(directory, read_state(directory))
    if state and state.get("state") == "failed":
        print("the supervisor gave up restarting Triton; starting afresh")
        cmd_down(args)
        state = None
    if state:
        print(usage(state))
        return 0
    repository = Path(args.model_repository)
    checkpoint = None
    if args.no_build:
        if not (repository / "ner" / "config.pbtxt").exists():
            print(f"error: --no-build, and {repository} holds no model repository", file=sys.stderr)
            return 1
    else:
        checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
        ensure_repository(checkpoint, repository, args.export_args)

    gateway_host = os.environ.get("NER_WEBUI_HOST", "127.0.0.1")
    gateway_port = int(os.environ.get("NER_WEBUI_PORT", "8080"))
    ports = [("--http-port", args.host, args.http_port), ("--grpc-port", args.host, args.grpc_port),
             ("--metrics-port", args.host, args.metrics_port)]
    if args.gateway:
        ports.append(("NER_WEBUI_PORT", gateway_host, gateway_port))
    busy = [f"{probe_host(host)}:{port} ({name})" for name, host, port in ports if port_in_use(host, port)]
    if busy:
        print(f"error: another program listens on {', '.join(busy)}; choose other ports", file=sys.stderr)
        return 1

    directory.mkdir(parents=True, exist_ok=True)
    cfg = ServerConfig(model_repository=repository.resolve(), host=args.host, http_port=args.http_port,
                       grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                       log_file=(directory / "tritonserver.log").resolve())
    gateway = None
    if args.gateway:
        env = {}
        if not os.environ.get("NER_TRITON_URL"):  # the Triton just started, unless told otherwise
            protocol = os.environ.get("NER_TRITON_PROTOCOL", "grpc")
            env = {"NER_TRITON_URL": f"{probe_host(args.host)}:{args.grpc_port if protocol == 'grpc' else args.http_port}",
                   "NER_TRITON_PROTOCOL": protocol}
        gateway = {"host": gateway_host, "port": gateway_port, "log_file": str((directory / "webui.log").resolve()),
                   "pid_file": str((directory / "webui.pid").resolve()), "env": env}
    supervisor_log = (directory / "supervisor.log").resolve()
    spec = SupervisorSpec(server=SupervisorSpec.server_dict(cfg), state_file=str((directory / "triton.json").resolve()),
                          start_timeout=args.timeout, max_restarts=args.max_restarts,
                          restart_window=args.restart_window, gateway=gateway,
                          info={"checkpoint": str(checkpoint) if checkpoint else None,
                                "supervisor_log": str(supervisor_log)})
    spec_path = directory / "supervisor-spec.json"
    spec.write(spec_path)
    with open(supervisor_log, "ab") as out:
        supervisor = subprocess.Popen([sys.executable, "-m", "serving", "supervise", str(spec_path.resolve())],
                                      cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
    print(f"started the supervisor (pid {supervisor.pid}); waiting for Triton (log {cfg.log_file})", flush=True)
    problem = wait_up(directory, supervisor, args.timeout, gateway is not None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        print(f"--- {supervisor_log} (last lines) ---\n{tail(supervisor_log, 15)}", file=sys.stderr)
        if gateway:
            print(f"--- {gateway['log_file']} (last lines) ---\n{tail(Path(gateway['log_file']), 10)}", file=sys.stderr)
        if supervisor.poll() is None:
            supervisor.terminate()
            try:
                supervisor.wait(60)
            except subprocess.TimeoutExpired:
                supervisor.kill()
        clean_leftovers(directory, read_state(directory))
        return 1
    print(usage(read_state(directory)))
    return 0


def wait_up(directory: Path, supervisor: subprocess.Popen, timeout: float, with_gateway: bool) -> str | None:
    """Waits until the supervisor reports Triton ready and, with the gateway, its /healthz says 200."""
    deadline = time.monotonic() + timeout
    gateway_deadline = None
    last = "no answer"
    while True:
        if supervisor.poll() is not None:
            return f"the supervisor exited with code {supervisor.returncode}"
        state = read_state(directory) or {}
        if state.get("state") == "failed":
            return "Triton could not be started (the supervisor gave up)"
        if state.get("state") == "ready":
            if not with_gateway:
                return None
            if gateway_deadline is None:
                gateway_deadline = time.monotonic() + float(os.environ.get("NER_WEBUI_START_TIMEOUT", "60"))
            url = gateway_url(state)
            try:
                with urllib.request.urlopen(url + "healthz", timeout=5):
                    return None
            except urllib.error.HTTPError as err:
                last = f"{err.code} {err.read().decode(errors='replace')}"
            except OSError as err:
                last = str(err)
            if time.monotonic() > gateway_deadline:
                return f"the web gateway's /healthz did not report Triton ready: {last}"
        elif time.monotonic() > deadline:
            return f"Triton not ready after {timeout:.0f} s"
        time.sleep(0.3)


def cmd_down(args) -> int:
    directory = run_dir(args)
    state = read_state(directory)
    stopped = False
    if state and supervisor_alive(state):
        pid = state["pid"]
        if state.get("supervisor"):
            os.kill(pid, signal.SIGTERM)  # it stops the gateway, then Triton (gracefully), then exits
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and is_running(pid):
                time.sleep(0.2)
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
            print(f"stopped the supervisor (pid {pid}), Triton" + (" and the web gateway" if state.get("gateway") else ""))
        else:  # started by an older `up`: the pid is tritonserver's
            stop_process_group(pid)
            print(f"stopped Triton (pid {pid})")
        stopped = True
    stopped = clean_leftovers(directory, read_state(directory)) or stopped
    # A gateway started by an older scripts/up.sh.
    pid_file = directory / "webui.pid"
    try:
        gateway = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        gateway = None
    if is_ours(gateway, "-m webui"):
        stop_pid(gateway)
        print(f"stopped the web gateway (pid {gateway})")
        stopped = True
    pid_file.unlink(missing_ok=True)
    if not stopped:
        print("Triton is not running")
    return 0


def cmd_status(args) -> int:
    directory = run_dir(args)
    state = running(directory)
    if args.json:
        print(json.dumps(state or {"state": "stopped", "leftovers": leftovers(read_state(directory))}, indent=1))
    if not state:
        if not args.json:
            left = leftovers(read_state(directory))
            print("Triton is not running" if not left else
                  f"the supervisor is not running, but {' and '.join(left)} are still running: "
                  f"python -m serving down stops them")
        return 1
    if state.get("supervisor"):
        ready = state.get("state") == "ready" and is_ready(probe_host(state["host"]), state["http_port"])
    else:
        ready = is_ready(probe_host(state["host"]), state["http_port"])
    if args.json:
        return 0 if ready else 1
    if ready:
        print(usage(state))
    else:
        print(f"Triton is {state.get('state', 'running')} but not ready (supervisor pid {state['pid']}); log "
              f"{state.get('supervisor_log')}")
    restarts = state.get("restarts", 0)
    if state.get("supervisor"):
        line = f"restarts: {restarts} (at most {state['max_restarts']} within {state['restart_window_s']:.0f} s)"
        if state.get("recoveries"):
            last = state["recoveries"][-1]
            line += (f"; last: {last['reason']} at {last['detected_at']}, ready again {last['recovered_s']} s "
                     f"later")
        print(line)
        gateway = state.get("gateway")
        if gateway and (gateway.get("restarts") or gateway.get("gave_up")):
            print(f"web gateway restarts: {gateway['restarts']}" + (" (gave up)" if gateway.get("gave_up") else ""))
    return 0 if ready else 1


def main(argv=None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run-dir", default=env("NER_RUN_DIR"),
                        help="where the state file, pid files and logs go [NER_RUN_DIR; default .run]")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[common], help="build the repository if needed; start Triton and the gateway")
    up.add_argument("--checkpoint", default=env("NER_CHECKPOINT"),
                    help="checkpoint to serve [NER_CHECKPOINT]; default: models/default, else a generated tiny model")
    up.add_argument("--model-repository", default=env("NER_MODEL_REPOSITORY", str(REPO_ROOT / "build" / "model_repository")),
                    help="[NER_MODEL_REPOSITORY]")
    up.add_argument("--no-build", action="store_true", default=env("NER_NO_BUILD", "0") == "1",
                    help="serve --model-repository as it is, without exporting a checkpoint into it [NER_NO_BUILD=1]")
    up.add_argument("--host", default=env("NER_HOST", "127.0.0.1"), help="address Triton binds [NER_HOST]")
    up.add_argument("--http-port", type=int, default=int(env("NER_HTTP_PORT", "8000")), help="[NER_HTTP_PORT]")
    up.add_argument("--grpc-port", type=int, default=int(env("NER_GRPC_PORT", "8001")), help="[NER_GRPC_PORT]")
    up.add_argument("--metrics-port", type=int, default=int(env("NER_METRICS_PORT", "8002")), help="[NER_METRICS_PORT]")
    up.add_argument("--no-gateway", dest="gateway", action="store_false", default=env("NER_GATEWAY", "1") != "0",
                    help="do not start the web gateway [NER_GATEWAY=0]")
    up.add_argument("--max-restarts", type=int, default=int(env("NER_MAX_RESTARTS", "5")),
                    help="most restarts of Triton within --restart-window [NER_MAX_RESTARTS]")
    up.add_argument("--restart-window", type=float, default=float(env("NER_RESTART_WINDOW", "600")),
                    help="seconds [NER_RESTART_WINDOW]")
    up.add_argument("--timeout", type=float, default=float(env("NER_START_TIMEOUT", "180")),
                    help="seconds to wait for readiness [NER_START_TIMEOUT]")
    up.add_argument("--export-args", nargs=argparse.REMAINDER, default=env("NER_EXPORT_ARGS", "").split(),
                    help="extra flags for python -m export [NER_EXPORT_ARGS]")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", parents=[common], help="stop the gateway and Triton").set_defaults(func=cmd_down)
    status = sub.add_parser("status", parents=[common], help="is Triton up and ready; restarts so far")
    status.add_argument("--json", action="store_true", help="print the supervisor's state as JSON")
    status.set_defaults(func=cmd_status)
    supervise = sub.add_parser("supervise", help=argparse.SUPPRESS)
    supervise.add_argument("spec")
    supervise.set_defaults(func=lambda args: __import__("serving.supervisor", fromlist=["main"]).main(args.spec))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
