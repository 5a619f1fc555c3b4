"""docker-compose.yml against the repository it mounts: paths, model names, ports, health checks, pins.

There is no Docker daemon on these machines: this checks the files, it does not run the stack.
"""

from __future__ import annotations

import re

import pytest
import yaml

from export.repository import ENSEMBLES
from serving.server import REPO_ROOT
from test_model_configs import MODELS, parse_config, rewrite_repository

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def flag(command: list[str], name: str) -> str:
    for i, part in enumerate(command):
        if part.startswith(f"{name}="):
            return part.split("=", 1)[1]
        if part == name:
            return command[i + 1]
    raise KeyError(name)


def pinned(requirements: str) -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements" / requirements).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[.*\])?==(\S+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


@pytest.fixture(scope="module")
def native_repository(served, tmp_path_factory):
    return rewrite_repository(served, tmp_path_factory.mktemp("compose") / "model_repository_onnxruntime", "onnxruntime")


@pytest.mark.unit
def test_only_the_gateway_is_published():
    assert set(SERVICES) == {"triton", "webui"}
    assert "ports" not in SERVICES["triton"]
    assert [p.split(":")[-1] for p in SERVICES["webui"]["ports"]] == [flag(SERVICES["webui"]["command"], "--port")]
    # On the host's loopback only, and the gateway (bound to every interface in its container) checks Host names.
    assert SERVICES["webui"]["ports"] == [f"127.0.0.1:{flag(SERVICES['webui']['command'], '--port')}:8080"]
    from webui.cli import parse_args

    settings = parse_args(SERVICES["webui"]["command"], environ={})
    assert settings.host == "0.0.0.0" and set(settings.effective_allowed_hosts()) == {"localhost", "127.0.0.1"}


@pytest.mark.unit
def test_triton_mounts_the_native_repository_read_only_without_cache_and_no_model_control():
    (volume,) = SERVICES["triton"]["volumes"]
    source, target, mode = volume.split(":")
    command = SERVICES["triton"]["command"]
    assert mode == "ro" and flag(command, "--model-repository") == target
    assert source == "./build/model_repository_onnxruntime"
    assert "--encoder-backend onnxruntime --no-response-cache" in (REPO_ROOT / "docker-compose.yml").read_text()
    assert "--output build/model_repository_onnxruntime" in (REPO_ROOT / "docker-compose.yml").read_text()
    assert flag(command, "--model-control-mode") == "none"
    # The gateway hands strangers' text to Triton: no response cache (a 64-bit key, no input comparison on a hit).
    assert not any(arg.startswith("--cache-config") for arg in command)


@pytest.mark.unit
def test_gateway_reaches_tritons_grpc_port_and_waits_for_it():
    triton, webui = SERVICES["triton"], SERVICES["webui"]
    host, port = flag(webui["command"], "--triton-url").split(":")
    assert host == "triton" and port == flag(triton["command"], "--grpc-port")
    assert port in triton["expose"]
    assert webui["depends_on"]["triton"]["condition"] == "service_healthy"
    check = " ".join(triton["healthcheck"]["test"])
    http = flag(triton["command"], "--http-port")
    assert f"localhost:{http}/v2/health/ready" in check
    # A dead Python-backend stub leaves readiness at 200: the check must run an inference the cache cannot answer.
    assert f"localhost:{http}/v2/models/ner/infer" in check and "date +%s%N" in check
    assert "/healthz" in " ".join(webui["healthcheck"]["test"])


@pytest.mark.server
def test_mounted_repository_holds_every_model_in_native_form(native_repository):
    for name in MODELS:
        config = parse_config(native_repository / name / "config.pbtxt")
        assert config.name == name
    for ensemble, (encoder, _) in ENSEMBLES.items():
        config = parse_config(native_repository / encoder / "config.pbtxt")
        assert config.backend == "onnxruntime"
        assert config.parameters["intra_op_thread_count"].string_value.isdigit()  # CPU threads set explicitly
        assert sorted(p.name for p in (native_repository / encoder / "1").iterdir()) == ["model.onnx"]
        steps = parse_config(native_repository / ensemble / "config.pbtxt").ensemble_scheduling.step
        assert all((native_repository / step.model_name).is_dir() for step in steps)


@pytest.mark.unit
def test_triton_image_matches_local_release_and_pins():
    dockerfile = (REPO_ROOT / "deploy" / "triton.Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tritonserver:24.10-py3" in dockerfile
    serve = pinned("serve.txt")
    for package in ("numpy", "tokenizers"):
        assert f"{package}=={serve[package]}" in dockerfile
    assert SERVICES["triton"]["build"]["dockerfile"] == "deploy/triton.Dockerfile"
    assert (REPO_ROOT / SERVICES["webui"]["build"]["dockerfile"]).exists()
