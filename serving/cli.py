"""python -m serving up|down|status — the local Triton server for the default model, and the web gateway.

up: builds the model repository unless it holds the export of this checkpoint (the same checkpoint files, export
options and code, and its own files unchanged since), starts a supervisor that runs tritonserver and then the web
gateway (python -m webui) and restarts them when they fail, waits until both are ready and prints how to call them and the command that stops
them. With a server already running in its run directory, up prints what runs there and exits 1 when it was asked
for something else. down: stops all of it. status: is it ready, how many restarts there were. Each takes --run-dir.

The gateway takes its own settings (NER_WEBUI_*, python -m webui --help); it calls the Triton that up starts unless
--triton-url names another.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from ner_client.settings import TRITON_PROTOCOL, TRITON_URL, Setting, SettingGroup, boolean, positive_int

from . import control
from .server import REPO_ROOT


def shell_words(text: str | list[str]) -> tuple[str, ...]:
    return tuple(shlex.split(text) if isinstance(text, str) else text)


SETTINGS = SettingGroup("NER_SERVE_", (
    Setting("run_dir", control.DEFAULT_RUN_DIR, "where the state file and the logs go", type=Path, env="NER_RUN_DIR",
            shown=".run"),
    Setting("checkpoint", None, "checkpoint to serve", type=Path, env="NER_CHECKPOINT",
            shown="models/default, else a generated tiny model"),
    Setting("model_repository", REPO_ROOT / "build" / "model_repository", "the model repository to build and serve",
            type=Path, env="NER_MODEL_REPOSITORY", shown="build/model_repository"),
    Setting("build", True, "export the checkpoint into the model repository unless it holds that export already "
            "(--no-build: serve the repository as it is)", type=boolean),
    Setting("export_args", (), "extra flags for python -m export, as one shell-quoted string", type=shell_words,
            shown="none"),
    Setting("host", "127.0.0.1", "address Triton binds; a non-loopback one (or the gateway's) builds the repository "
            "without Triton's response cache unless --export-args asks for --response-cache"),
    Setting("http_port", 8000, "Triton's HTTP port", type=positive_int),
    Setting("grpc_port", 8001, "Triton's gRPC port", type=positive_int),
    Setting("metrics_port", 8002, "Triton's metrics port", type=positive_int),
    Setting("timeout", 180.0, "seconds to wait for Triton's readiness", type=float),
    Setting("max_restarts", 5, "most restarts of Triton within --restart-window", type=int),
    Setting("restart_window", 600.0, "seconds", type=float),
    Setting("gateway", True, "start the web gateway", type=boolean),
    Setting("gateway_timeout", 60.0, "seconds to wait, once Triton is ready, for the gateway's /healthz", type=float),
    dataclasses.replace(TRITON_URL, name="triton_url", help="the Triton the gateway calls", shown="the Triton up starts"),
    dataclasses.replace(TRITON_PROTOCOL, name="triton_protocol"),
    Setting("json", False, "status: print the supervisor's state as JSON", type=boolean),
), title="python -m serving")

COMMANDS = {
    "up": ("build the repository if needed; start Triton and the gateway",
           [s.name for s in SETTINGS if s.name != "json"]),
    "down": ("stop the gateway and Triton", ["run_dir"]),
    "status": ("is Triton up and ready; restarts so far", ["run_dir", "json"]),
}


def gateway_address() -> tuple[str, int]:
    """Where the gateway will listen: its own settings (NER_WEBUI_HOST, NER_WEBUI_PORT)."""
    from webui.settings import SETTINGS as WEBUI

    values = WEBUI.parser("python -m webui", names=("host", "port")).parse_args([])
    return values.host, values.port


def export_options(export_args: tuple[str, ...]) -> dict[str, str]:
    """The export's effective options (its NER_EXPORT_* variables, then --export-args): what a build depends on
    besides the checkpoint and the code."""
    from export.cli import SETTINGS as EXPORT

    names = [s.name for s in EXPORT if s.name not in ("checkpoint", "output")]
    values = EXPORT.parser("python -m export", names=names).parse_args(list(export_args))
    return {name: str(value) for name, value in sorted(vars(values).items())}


def export_args_for(export_args: tuple[str, ...], hosts: tuple[str, ...]) -> tuple[str, ...]:
    """The export's flags for up: Triton's response cache off when Triton or the gateway listens beyond loopback,
    where strangers' text can reach it (its key is a 64-bit non-cryptographic hash of the inputs, not compared on a
    hit: docs/operations.md, Security); a --response-cache in --export-args still turns it on (flags later win)."""
    from webui.settings import is_loopback

    return tuple(export_args) if all(is_loopback(host) for host in hosts) else ("--no-response-cache", *export_args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, (help_text, names) in COMMANDS.items():
        SETTINGS.add_to(sub.add_parser(command, help=help_text, description=help_text), names)
    supervise = sub.add_parser("supervise", help=argparse.SUPPRESS)  # what up starts in the background
    supervise.add_argument("spec", type=Path)
    args = parser.parse_args(argv)
    if args.command == "supervise":
        from .supervisor import main as supervise_main

        return supervise_main(args.spec)
    if args.command == "up":
        gateway = gateway_address() if args.gateway else None
        args.export_args = export_args_for(args.export_args, (args.host, *([gateway[0]] if gateway else [])))
        return control.up(args, gateway, export_options(args.export_args) if args.build else {})
    if args.command == "down":
        return control.down(Path(args.run_dir))
    return control.status(Path(args.run_dir), args.json)
