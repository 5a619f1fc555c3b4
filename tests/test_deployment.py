"""The compose files against what they build, mount and publish, and the native option's bound on one call.

docker-compose.yml runs the tested server (deploy/serve.Dockerfile: scripts/setup.sh, the suite's pins); its entry
point and health check run here for real, outside a container. deploy/compose.native.yml (Triton's official 24.10
image, native ONNX Runtime backend) cannot run here (no Docker daemon, no native backend): its files, and the
repository it mounts, are checked statically.
"""

from __future__ import annotations

import fnmatch
import os
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from conftest import tiny_checkpoint
from export.native import MAX_OPSET, unloadable
from export.repository import ENSEMBLES, RepositoryConfig
from ner_pipeline import InputRejected, WindowConfig, encode_texts, load_tokenizer
from serving.cli import SETTINGS as SERVE, export_args_for
from serving.processes import port_in_use
from serving.server import REPO_ROOT, free_port
from test_model_configs import MODELS, native_export, parse_config
from webui.cli import parse_args as gateway_settings

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
NATIVE_FILE = REPO_ROOT / "deploy" / "compose.native.yml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
NATIVE = yaml.safe_load(NATIVE_FILE.read_text())
SERVICE = COMPOSE["services"]["ner"]
DOCKERFILE = REPO_ROOT / SERVICE["build"]["dockerfile"]


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


def instruction(dockerfile: Path, name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in dockerfile.read_text().splitlines() if line.startswith(f"{name} ")]


def ignored(dockerfile: Path, path: str) -> bool:
    """Whether the Dockerfile's own ignore file leaves ``path`` (relative to the context) out of the build."""
    result = False
    for pattern in (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            result = not negate
    return result


# ---------------------------------------------------------------------------------------------- the default path

@pytest.mark.unit
def test_default_service_is_built_from_the_tested_setup():
    assert set(COMPOSE["services"]) == {"ner"}
    assert SERVICE["build"]["context"] == "." and DOCKERFILE.is_file()
    (base,) = instruction(DOCKERFILE, "FROM")
    # Pinned by tag, on the Python the suite runs (the Python-backend stub is chosen by Python version).
    assert base == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim-bookworm"
    assert "bash scripts/setup.sh serve && rm -rf /root/.cache" in instruction(DOCKERFILE, "RUN")
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    assert 'pip install -q --disable-pip-version-check -r "requirements/$profile.txt"' in setup
    assert "ensure_layout(Path(\".triton\"))" in setup
    # setup.sh installs requirements/serve.txt's pins: the server build, backend and ONNX Runtime the suite runs.
    serve = pinned("serve.txt")
    for package in ("nvidia-pytriton", "onnxruntime", "numpy", "tokenizers", "onnx"):
        assert version(package) == serve[package], package
    assert version("torch").split("+")[0] == serve["torch"]
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in DOCKERFILE.read_text()  # its CPU build


@pytest.mark.unit
def test_default_image_gets_the_checkout_but_not_local_builds():
    for needed in ("requirements/serve.txt", "scripts/setup.sh", "pyproject.toml", "client", "models/default",
                   "model_repository", "export", "serving", "webui", "ner_pipeline", "ner_model", "deploy/serve.sh",
                   "deploy/healthcheck.py"):
        assert (REPO_ROOT / needed).exists() and not ignored(DOCKERFILE, needed), needed
    for local in (".venv", ".triton", ".run", "build", ".git", "export/__pycache__"):
        assert ignored(DOCKERFILE, local), local
    assert instruction(DOCKERFILE, "WORKDIR") == ["/app"]
    assert instruction(DOCKERFILE, "ENTRYPOINT") == ['["bash", "deploy/serve.sh"]']
    entry = (REPO_ROOT / "deploy" / "serve.sh").read_text()
    assert '.venv/bin/python -m serving up "$@"' in entry  # as scripts/up.sh, after the same setup.sh


@pytest.mark.unit
def test_default_service_publishes_the_gateway_on_loopback_only_without_response_cache():
    environ = SERVICE["environment"]
    gateway = gateway_settings([], environ=environ)
    assert SERVICE["ports"] == [f"127.0.0.1:{gateway.port}:{gateway.port}"]
    assert instruction(DOCKERFILE, "EXPOSE") == [str(gateway.port)]
    assert gateway.host == "0.0.0.0" and set(gateway.effective_allowed_hosts()) == {"localhost", "127.0.0.1"}
    # Triton stays on the container's loopback, and up exports without Triton's response cache.
    serve = SERVE.parse([], prog="python -m serving", environ=environ)
    assert serve.host == "127.0.0.1" and not any(key.startswith("NER_SERVE_") for key in environ)
    args = export_args_for(serve.export_args, (serve.host, gateway.host))
    assert args[0] == "--no-response-cache" and "--response-cache" not in args


@pytest.mark.unit
def test_default_service_mounts_the_data_read_only_and_keeps_the_export_in_a_volume():
    environ = SERVICE["environment"]
    volumes = dict(volume.split(":", 1) for volume in SERVICE["volumes"])
    assert volumes["../shared/data"] == f"{environ['NER_DATA_DIR']}:ro"
    assert instruction(DOCKERFILE, "ENV")[-1] == f"NER_DATA_DIR={environ['NER_DATA_DIR']}"
    serve = SERVE.parse([], prog="python -m serving", environ=environ)
    workdir = Path(instruction(DOCKERFILE, "WORKDIR")[0])
    assert volumes["build"] == str(workdir / serve.model_repository.relative_to(REPO_ROOT).parent)
    assert "build" in COMPOSE["volumes"]
    assert SERVICE["tmpfs"] == [str(workdir / serve.run_dir.relative_to(REPO_ROOT))]
    assert SERVICE["healthcheck"]["test"] == ["CMD", ".venv/bin/python", "deploy/healthcheck.py"]
    assert SERVICE["init"] is True and SERVICE["shm_size"] == "1gb" and SERVICE["stop_grace_period"] == "60s"


# ----------------------------------------------------------------------------------------------- the native option

@pytest.mark.unit
def test_native_option_publishes_only_the_gateway_on_loopback():
    services = NATIVE["services"]
    assert set(services) == {"triton", "webui"}
    assert "ports" not in services["triton"]
    command = services["webui"]["command"]
    assert services["webui"]["ports"] == [f"127.0.0.1:{flag(command, '--port')}:8080"]
    settings = gateway_settings(command, environ={})
    assert settings.host == "0.0.0.0" and set(settings.effective_allowed_hosts()) == {"localhost", "127.0.0.1"}


@pytest.mark.unit
def test_native_option_mounts_the_native_repository_read_only_without_cache():
    triton = NATIVE["services"]["triton"]
    (volume,) = triton["volumes"]
    source, target, mode = volume.split(":")
    command = triton["command"]
    assert mode == "ro" and flag(command, "--model-repository") == target
    assert (NATIVE_FILE.parent / source).resolve() == REPO_ROOT / "build" / "model_repository_onnxruntime"
    text = NATIVE_FILE.read_text()
    assert "--encoder-backend onnxruntime --no-response-cache" in text
    assert "--output build/model_repository_onnxruntime" in text
    assert flag(command, "--model-control-mode") == "none"
    assert not any(arg.startswith("--cache-config") for arg in command)


@pytest.mark.unit
def test_native_gateway_reaches_tritons_grpc_port_and_waits_for_it():
    triton, webui = NATIVE["services"]["triton"], NATIVE["services"]["webui"]
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


@pytest.mark.unit
def test_native_images_match_the_local_release_and_pins():
    serve = pinned("serve.txt")
    for service in NATIVE["services"].values():
        context = (NATIVE_FILE.parent / service["build"]["context"]).resolve()
        assert context == REPO_ROOT and (context / service["build"]["dockerfile"]).is_file()
    triton = REPO_ROOT / NATIVE["services"]["triton"]["build"]["dockerfile"]
    assert instruction(triton, "FROM") == ["nvcr.io/nvidia/tritonserver:24.10-py3"]  # = tritonserver 2.51.0
    for package in ("numpy", "tokenizers"):
        assert f"{package}=={serve[package]}" in triton.read_text()
    assert ignored(triton, "models/default") and ignored(triton, ".venv")
    webui = REPO_ROOT / NATIVE["services"]["webui"]["build"]["dockerfile"]
    assert instruction(webui, "FROM") == [f"python:{sys.version_info.major}.{sys.version_info.minor}-slim-bookworm"]
    for copied in ("requirements/webui.txt", "client", "webui"):
        assert not ignored(webui, copied), copied
    assert ignored(webui, ".venv") and ignored(webui, "models/default")


@pytest.mark.unit
def test_native_request_limits_come_from_max_tokens_per_run():
    python, native = RepositoryConfig(), RepositoryConfig(encoder_backend="onnxruntime")
    assert python.request_limits() == (python.max_texts_per_request, python.window.max_rows_per_request)
    rows = native.max_tokens_per_run // max(native.window.length_buckets)
    assert native.request_limits() == (min(native.max_texts_per_request, rows), rows) == (4, 4)
    assert RepositoryConfig(encoder_backend="onnxruntime", max_tokens_per_run=8192).request_limits() == (16, 16)
    with pytest.raises(ValueError, match="cannot hold one row of 512 tokens"):
        RepositoryConfig(encoder_backend="onnxruntime", max_tokens_per_run=511)


@pytest.fixture(scope="module")
def native_repository(served, tmp_path_factory):
    return native_export(served, tmp_path_factory.mktemp("compose") / "model_repository_onnxruntime")


@pytest.mark.server
def test_native_repository_holds_every_model_in_native_form(native_repository):
    for name in MODELS:
        assert parse_config(native_repository / name / "config.pbtxt").name == name
    for ensemble, (encoder, _) in ENSEMBLES.items():
        config = parse_config(native_repository / encoder / "config.pbtxt")
        assert config.backend == "onnxruntime"
        assert config.parameters["intra_op_thread_count"].string_value.isdigit()  # CPU threads set explicitly
        assert sorted(p.name for p in (native_repository / encoder / "1").iterdir()) == ["model.onnx"]
        steps = parse_config(native_repository / ensemble / "config.pbtxt").ensemble_scheduling.step
        assert all((native_repository / step.model_name).is_dir() for step in steps)


@pytest.mark.server
def test_native_calls_stay_within_max_tokens_per_run(native_repository):
    """The native encoder's batcher forms calls of at most max_batch_size rows of at most the longest bucket; the
    tokenizer refuses a request needing more rows, so a 100,000-character text (262 windows) never reaches it."""
    tokenizer_config = parse_config(native_repository / "tokenizer" / "config.pbtxt")
    window = WindowConfig.from_parameters({k: v.string_value for k, v in tokenizer_config.parameters.items()})
    longest = max(window.length_buckets)
    for ensemble, (encoder, _) in ENSEMBLES.items():
        config = parse_config(native_repository / encoder / "config.pbtxt")
        budget = int(config.parameters["max_tokens_per_run"].string_value)
        assert config.max_batch_size * longest <= budget < (config.max_batch_size + 1) * longest
        assert window.max_rows_per_request == config.max_batch_size
        ensemble_config = parse_config(native_repository / ensemble / "config.pbtxt")
        assert ensemble_config.max_batch_size <= config.max_batch_size
        assert ensemble_config.parameters["max_rows_per_request"].string_value == str(config.max_batch_size)
        assert parse_config(native_repository / "decoder" / "config.pbtxt").max_batch_size == config.max_batch_size

    tokenizer = load_tokenizer(str(native_repository / "tokenizer" / "1" / "tokenizer.json"))
    long_text = ("张三在北京的清华大学读书。" * 8000)[: window.max_text_chars]
    assert len(long_text) == 100_000
    with pytest.raises(InputRejected, match=rf"needs \d+ windows .* max_rows_per_request={config.max_batch_size}"):
        encode_texts(tokenizer, [long_text], window)
    # What the tokenizer lets through fits one call: the most texts per request, or the longest text that fits
    # (one character per token here); one more window is refused.
    step = window.window_tokens - window.overlap_tokens
    longest_text = long_text[: window.window_tokens + (config.max_batch_size - 1) * step]
    for texts in ([long_text[:40]] * ensemble_config.max_batch_size, [longest_text]):
        batch = encode_texts(tokenizer, texts, window)
        assert batch.rows <= config.max_batch_size and batch.input_ids.size <= budget
    assert encode_texts(tokenizer, [longest_text], window).rows == config.max_batch_size
    two_windows = long_text[: window.window_tokens + 1]
    for texts in ([long_text[: len(longest_text) + 1]], [two_windows] * config.max_batch_size):
        with pytest.raises(InputRejected, match="max_rows_per_request"):
            encode_texts(tokenizer, texts, window)


@pytest.mark.server
def test_native_export_refuses_a_graph_onnx_runtime_1_19_cannot_load(served, native_repository, tmp_path):
    import onnx

    from export.errors import CheckpointError

    source = native_repository / "encoder_fp32" / "1" / "model.onnx"
    model = onnx.load(str(source))
    next(o for o in model.opset_import if o.domain in ("", "ai.onnx")).version = MAX_OPSET + 1
    model.graph.node[0].op_type = "NotAnOperator"
    newer = tmp_path / "newer.onnx"
    onnx.save(model, str(newer))
    assert unloadable(newer) == [f"opset {MAX_OPSET + 1} (at most {MAX_OPSET})", "operators NotAnOperator"]
    with pytest.raises(CheckpointError, match="ONNX Runtime 1.19 .* cannot load this graph: opset 22"):
        from export.repository import write_repository

        write_repository(tmp_path / "repository", {"fp32": newer, "int8": source},
                         served.repository / "tokenizer" / "1" / "tokenizer.json", served.checkpoint.labels,
                         served.checkpoint.scheme, served.checkpoint.crf,
                         RepositoryConfig(encoder_backend="onnxruntime"))


# ------------------------------------------------------------------------- the default container's entry point, run

@pytest.mark.server
@pytest.mark.slow
def test_entry_point_serves_until_stopped_and_passes_its_health_check(tmp_path):
    """deploy/serve.sh and deploy/healthcheck.py as the container runs them, with the service's environment (the
    gateway on every interface, its allowed hosts), here on free ports with the tiny model and the local data folder:
    up exports without the response cache and serves, the health check passes (an inference and the gateway's
    /healthz), SIGTERM stops both."""
    ports = {"NER_SERVE_HTTP_PORT": free_port(), "NER_SERVE_GRPC_PORT": free_port(),
             "NER_SERVE_METRICS_PORT": free_port(), "NER_WEBUI_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
    env.update({k: v for k, v in SERVICE["environment"].items() if k != "NER_DATA_DIR"})
    env.update({k: str(v) for k, v in ports.items()}, NER_RUN_DIR=str(tmp_path / "run"),
               NER_CHECKPOINT=str(tiny_checkpoint("BIO", crf=True)),
               NER_MODEL_REPOSITORY=str(tmp_path / "build" / "model_repository"))
    health = [sys.executable, "deploy/healthcheck.py"]
    assert subprocess.run(health, cwd=REPO_ROOT, env=env, capture_output=True).returncode == 1  # nothing runs yet
    entry = subprocess.Popen(["bash", "deploy/serve.sh"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while subprocess.run(health, cwd=REPO_ROOT, env=env, capture_output=True).returncode != 0:
            assert entry.poll() is None, entry.stdout.read()
            assert time.monotonic() < deadline, "not healthy within 600 s"
            time.sleep(2)
        time.sleep(6)  # the entry point now waits on the supervisor
        assert entry.poll() is None
        for ensemble in ENSEMBLES:
            config = parse_config(tmp_path / "build" / "model_repository" / ensemble / "config.pbtxt")
            assert not config.response_cache.enable
        entry.send_signal(signal.SIGTERM)
        output, _ = entry.communicate(timeout=120)
        assert entry.returncode == 0, output
        assert "stopped the supervisor" in output
        assert not any(port_in_use("127.0.0.1", port) for port in ports.values()), output
    finally:
        if entry.poll() is None:
            entry.kill()
            subprocess.run([sys.executable, "-m", "serving", "down"], cwd=REPO_ROOT, env=env, timeout=120)
