"""python -m serving up|down|status — the local Triton server for the default model.

``up`` builds the model repository if the checkpoint or the project's code changed since the last build, starts
tritonserver in the background on 127.0.0.1, waits until it is ready and prints how to call it. Every flag has an
environment variable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from .server import REPO_ROOT, ServerConfig, TritonServer, is_ready, stop_process_group

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


def running() -> dict | None:
    if not PID_FILE.exists():
        return None
    state = json.loads(PID_FILE.read_text())
    try:
        os.kill(state["pid"], 0)
    except ProcessLookupError:
        PID_FILE.unlink()
        return None
    return state


def usage(state: dict) -> str:
    host, http, grpc = state["host"], state["http_port"], state["grpc_port"]
    return f"""Triton is serving the NER ensembles `ner` (INT8) and `ner_fp32` (pid {state['pid']}):
  HTTP    http://{host}:{http}    gRPC {host}:{grpc}    metrics http://{host}:{state['metrics_port']}/metrics
  model   {state['checkpoint']}
  log     {state['log']}
Try:
  curl -s http://{host}:{http}/v2/models/ner/infer -H 'Content-Type: application/json' \\
    -d '{{"inputs":[{{"name":"TEXT","datatype":"BYTES","shape":[1,1],"data":["张三在北京的清华大学读书。"]}}]}}'
Stop with: bash scripts/down.sh"""


def cmd_up(args) -> int:
    state = running()
    if state:
        print(usage(state))
        return 0
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    repository = Path(args.model_repository)
    ensure_repository(checkpoint, repository, args.export_args)
    RUN_DIR.mkdir(exist_ok=True)
    cfg = ServerConfig(model_repository=repository, host=args.host, http_port=args.http_port,
                       grpc_port=args.grpc_port, metrics_port=args.metrics_port, log_file=RUN_DIR / "tritonserver.log")
    server = TritonServer(cfg)
    try:
        server.start(timeout=args.timeout)
    except (RuntimeError, TimeoutError) as err:
        server.stop()
        print(f"error: {err}", file=sys.stderr)
        return 1
    state = {"pid": server.process.pid, "host": args.host, "http_port": args.http_port, "grpc_port": args.grpc_port,
             "metrics_port": args.metrics_port, "checkpoint": str(checkpoint), "log": str(cfg.log_file),
             "model_repository": str(repository.resolve())}
    PID_FILE.write_text(json.dumps(state))
    print(usage(state))
    return 0


def cmd_down(args) -> int:
    state = running()
    if not state:
        print("Triton is not running")
        return 0
    stop_process_group(state["pid"])
    PID_FILE.unlink(missing_ok=True)
    print(f"stopped Triton (pid {state['pid']})")
    return 0


def cmd_status(args) -> int:
    state = running()
    if not state:
        print("Triton is not running")
        return 1
    ready = is_ready(state["host"], state["http_port"])
    print(usage(state) if ready else f"Triton (pid {state['pid']}) is running but not ready")
    return 0 if ready else 1


def main(argv=None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build the repository if needed and start Triton")
    up.add_argument("--checkpoint", default=env("NER_CHECKPOINT"),
                    help="checkpoint to serve [NER_CHECKPOINT]; default: models/default, else a generated tiny model")
    up.add_argument("--model-repository", default=env("NER_MODEL_REPOSITORY", str(REPO_ROOT / "build" / "model_repository")),
                    help="[NER_MODEL_REPOSITORY]")
    up.add_argument("--host", default=env("NER_HOST", "127.0.0.1"), help="address to bind [NER_HOST]")
    up.add_argument("--http-port", type=int, default=int(env("NER_HTTP_PORT", "8000")), help="[NER_HTTP_PORT]")
    up.add_argument("--grpc-port", type=int, default=int(env("NER_GRPC_PORT", "8001")), help="[NER_GRPC_PORT]")
    up.add_argument("--metrics-port", type=int, default=int(env("NER_METRICS_PORT", "8002")), help="[NER_METRICS_PORT]")
    up.add_argument("--timeout", type=float, default=float(env("NER_START_TIMEOUT", "180")),
                    help="seconds to wait for readiness [NER_START_TIMEOUT]")
    up.add_argument("--export-args", nargs=argparse.REMAINDER, default=env("NER_EXPORT_ARGS", "").split(),
                    help="extra flags for python -m export [NER_EXPORT_ARGS]")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop Triton").set_defaults(func=cmd_down)
    sub.add_parser("status", help="is Triton up and ready").set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
