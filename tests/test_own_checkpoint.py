"""Bringing one's own checkpoint, as the README tells a user: a checkpoint with labels of its own, exported and
served by `python -m serving up` on free ports with a run directory of its own, answered through the SDK and stopped
by the command `up` printed; a repository that another export overwrote is rebuilt, not served as the requested
model; a second `up` into a running run directory says what runs there; a bad checkpoint gives one line, not a
traceback.

The checkpoints are random-weight BERT token classifiers made here in a second. The PRODUCT/BRAND one is rigged by
its classifier's bias (I-PRODUCT above B-PRODUCT above the rest) so that its BIO constraint CRF tags every text as one
PRODUCT: an answer that a served stale model could not give.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from export.synthetic import constraint_crf
from ner_client import NerClient
from ner_model.data import vocab_file, write_tokenizer_files
from ner_pipeline.tagging import scheme_labels
from serving import control
from serving.cli import export_options
from serving.processes import port_in_use
from serving.server import REPO_ROOT, free_port

PRODUCT_LABELS = scheme_labels("BIO", ["PRODUCT", "BRAND"])
DRUG_LABELS = scheme_labels("BIOES", ["DRUG", "DISEASE"])
TEXT = "小米手机很好用。"


def random_checkpoint(path: Path, labels: list[str], bias: dict[str, float], crf: str | None) -> Path:
    """A random-weight BertForTokenClassification with ``labels``, its classifier's bias set to ``bias`` (0 for the
    labels not named), the bert-base-chinese tokenizer, and with ``crf`` (a scheme) the constraint CRF of it."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForTokenClassification

    write_tokenizer_files(path, vocab_file())
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(
        vocab_size=21128, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)}))
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([bias.get(label, 0.0) for label in labels]))
    model.save_pretrained(path)
    if crf:
        save_file({k: torch.from_numpy(v) for k, v in constraint_crf(labels, crf).items()}, str(path / "crf.safetensors"))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """(PRODUCT/BRAND with a BIO CRF, tagging every text as one PRODUCT; DRUG/DISEASE in BIOES, argmax)."""
    root = tmp_path_factory.mktemp("own-checkpoints")
    return (random_checkpoint(root / "products", PRODUCT_LABELS, {"B-PRODUCT": 3.0, "I-PRODUCT": 5.0}, "BIO"),
            random_checkpoint(root / "drugs", DRUG_LABELS, {}, None))


def served_labels(repository: Path) -> list[str]:
    return json.loads((repository / "decoder" / "1" / "labels.json").read_text())


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("NER_")}


def run(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), cwd=REPO_ROOT, env=clean_env(), capture_output=True, text=True, timeout=timeout)


def export(checkpoint: Path, repository: Path) -> None:
    done = run(sys.executable, "-m", "export", str(checkpoint), "--output", str(repository))
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------------------------- no server

@pytest.mark.unit
def test_the_stop_hint_names_the_run_directory():
    assert control.stop_command(control.DEFAULT_RUN_DIR) == "bash scripts/down.sh"
    assert control.stop_command(REPO_ROOT / "x" / ".." / ".run") == "bash scripts/down.sh"
    other = Path("/tmp/a run dir")
    assert control.stop_command(other) == "bash scripts/down.sh --run-dir '/tmp/a run dir'"
    assert shlex.split(control.stop_command(other))[-2:] == ["--run-dir", str(other)]
    # down.sh hands its arguments on to `python -m serving down`.
    assert re.search(r'python -m serving down "\$@"', (REPO_ROOT / "scripts" / "down.sh").read_text())


@pytest.mark.unit
def test_a_second_up_is_compared_with_what_runs():
    running = {"checkpoint": "/c/a", "model_repository": "/r", "host": "127.0.0.1", "http_port": 8000,
               "grpc_port": 8001, "metrics_port": 8002, "gateway": "127.0.0.1:8080",
               "export_options": {"opset": "17", "reduce_range": "False"}}
    assert control.differences(running, dict(running)) == []
    # --no-build asks for no particular checkpoint or export options.
    assert control.differences(running, {**running, "checkpoint": None, "export_options": None}) == []
    assert control.differences(running, {**running, "checkpoint": "/c/b", "http_port": 18000, "gateway": None,
                                         "export_options": {"opset": "18", "reduce_range": "False"}}) == [
        "checkpoint /c/b (running: /c/a)", "--http-port 18000 (running: 8000)", "the web gateway off (running: "
        "127.0.0.1:8080)", "export option opset 18 (running: 17)"]


@pytest.mark.unit
def test_the_build_fingerprint_covers_the_graphs_code_and_the_pins(tmp_path, monkeypatch):
    # Every package of this repository that the export's code imports is one of the fingerprint's inputs.
    local = {p.name for p in REPO_ROOT.iterdir() if (p / "__init__.py").exists()}
    imported = set()
    for folder in control.BUILD_INPUTS:
        for source in (REPO_ROOT / folder).rglob("*.py"):
            imported |= set(re.findall(r"^\s*(?:from|import) (\w+)", source.read_text(), re.M)) & local
    assert imported <= set(control.BUILD_INPUTS) and {"ner_model", "requirements"} <= set(control.BUILD_INPUTS)
    # A copy of the tree's inputs, changed one file at a time: a pin, then the model code.
    root = tmp_path / "root"
    for folder in control.BUILD_INPUTS:
        (root / folder).mkdir(parents=True)
    (root / "requirements" / "serve.txt").write_text("onnxruntime==1.31.1\n")
    (root / "ner_model" / "model.py").write_text("HIDDEN = 768\n")
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    monkeypatch.setattr(control, "REPO_ROOT", root)
    before = control.build_fingerprint(checkpoint, {"opset": "17"})
    assert control.build_fingerprint(checkpoint, {"opset": "17"}) == before
    (root / "requirements" / "serve.txt").write_text("onnxruntime==1.31.2\n")
    pinned = control.build_fingerprint(checkpoint, {"opset": "17"})
    (root / "ner_model" / "model.py").write_text("HIDDEN = 1024\n")
    assert len({before, pinned, control.build_fingerprint(checkpoint, {"opset": "17"})}) == 3


@pytest.mark.unit
def test_up_turns_the_response_cache_off_where_strangers_can_reach_it():
    from serving.cli import export_args_for

    assert export_args_for(("--opset", "18"), ("127.0.0.1", "127.0.0.1")) == ("--opset", "18")
    assert export_args_for((), ("localhost", "::1")) == ()
    for hosts in [("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "0.0.0.0"), ("192.168.1.5",), ("::",)]:
        args = export_args_for(("--opset", "18"), hosts)
        assert args == ("--no-response-cache", "--opset", "18"), hosts
        assert export_options(args)["response_cache"] == "False"
    # A trusted deployment asks for it explicitly.
    assert export_options(export_args_for(("--response-cache",), ("0.0.0.0",)))["response_cache"] == "True"


@pytest.mark.slow
def test_a_repository_another_export_overwrote_is_rebuilt(checkpoints, tmp_path):
    """Built from A by up, overwritten by `python -m export B --output` into the same folder: up rebuilds it from A."""
    products, drugs = checkpoints
    repository = tmp_path / "model_repository"
    options = export_options(())
    assert control.ensure_repository(products, repository, [], options)
    assert served_labels(repository) == PRODUCT_LABELS
    assert control.stale_because(repository, control.build_fingerprint(products, options)) is None

    export(drugs, repository)
    assert served_labels(repository) == DRUG_LABELS
    reason = control.stale_because(repository, control.build_fingerprint(products, options))
    assert reason is not None and "files changed" in reason, reason

    assert control.ensure_repository(products, repository, [], options)
    assert served_labels(repository) == PRODUCT_LABELS
    assert control.stale_because(repository, control.build_fingerprint(products, options)) is None


@pytest.mark.slow
def test_up_with_a_bad_checkpoint_says_one_line(tmp_path):
    done = run(sys.executable, "-m", "serving", "up", "--checkpoint", str(tmp_path / "no-such-checkpoint"),
               "--model-repository", str(tmp_path / "repository"), "--run-dir", str(tmp_path / "run"),
               "--no-gateway", "--http-port", str(free_port()), "--grpc-port", str(free_port()),
               "--metrics-port", str(free_port()))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "no-such-checkpoint" in lines[0], done.stderr
    assert not (tmp_path / "run" / control.STATE_FILE).exists()


# --------------------------------------------------------------------------------------------------- end to end

def up(checkpoint: Path, repository: Path, run_dir: Path, ports: list[int]) -> subprocess.CompletedProcess:
    http, grpc, metrics = map(str, ports)
    return run(sys.executable, "-m", "serving", "up", "--checkpoint", str(checkpoint), "--model-repository",
               str(repository), "--run-dir", str(run_dir), "--http-port", http, "--grpc-port", grpc,
               "--metrics-port", metrics, "--no-gateway")


def stop_as_told(started: subprocess.CompletedProcess, run_dir: Path, ports: list[int]) -> None:
    """Runs exactly the stop command `up` printed; it must name this run directory and stop this server."""
    try:
        (command,) = re.findall(r"^Stop with: (.+)$", started.stdout, re.M)
        assert command == f"bash scripts/down.sh --run-dir {shlex.quote(str(run_dir.resolve()))}"
        done = run(*shlex.split(command), timeout=300)
        assert done.returncode == 0 and "stopped the supervisor" in done.stdout, done.stdout + done.stderr
        assert not (run_dir / control.STATE_FILE).exists()
        assert not any(port_in_use("127.0.0.1", port) for port in ports)
    finally:  # a wrong stop command must not leave the server running
        if (run_dir / control.STATE_FILE).exists():
            run(sys.executable, "-m", "serving", "down", "--run-dir", str(run_dir), timeout=300)


def assert_serves_products(grpc_port: int) -> None:
    with NerClient(f"127.0.0.1:{grpc_port}") as client:
        info = client.model_info()
        assert list(info.labels) == PRODUCT_LABELS and set(info.entity_types) == {"PRODUCT", "BRAND"}
        assert (info.scheme, info.crf) == ("BIO", True)
        (entity,) = client.extract(TEXT)
    assert (entity.type, entity.start, entity.end, entity.span) == ("PRODUCT", 0, len(TEXT), TEXT)


@pytest.mark.server
@pytest.mark.slow
def test_bring_your_own_checkpoint_end_to_end(checkpoints, tmp_path):
    products, drugs = checkpoints
    repository, run_dir = tmp_path / "model_repository", tmp_path / "run"
    ports = [free_port() for _ in range(3)]

    started = up(products, repository, run_dir, ports)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        assert f"model   {products.resolve()}" in started.stdout
        assert_serves_products(ports[1])

        # The same request again: what runs, exit 0. Another request into this run directory: refused, saying what
        # runs and how to stop it, with nothing built or started.
        again = up(products, repository, run_dir, ports)
        assert again.returncode == 0 and f"HTTP    http://127.0.0.1:{ports[0]}" in again.stdout, again.stdout
        other_ports = [free_port() for _ in range(3)]
        refused = up(drugs, tmp_path / "other_repository", run_dir, other_ports)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        said = refused.stderr
        assert f"a server is already running with run directory {run_dir.resolve()}" in said, said
        assert f"checkpoint {products.resolve()}" in said and f"repository {repository.resolve()}" in said
        assert f"HTTP 127.0.0.1:{ports[0]}, gRPC 127.0.0.1:{ports[1]}" in said
        assert f"checkpoint {drugs.resolve()} (running: {products.resolve()})" in said
        assert f"--http-port {other_ports[0]} (running: {ports[0]})" in said
        assert f"Stop it with: bash scripts/down.sh --run-dir {shlex.quote(str(run_dir.resolve()))}" in said
        assert "another --run-dir" in said
        assert not (tmp_path / "other_repository").exists()
        assert not any(port_in_use("127.0.0.1", port) for port in other_ports)
    finally:
        if (run_dir / control.STATE_FILE).exists():
            stop_as_told(started, run_dir, ports)

    # The README's own export writes into the folder up serves: up must rebuild it from the checkpoint it is given.
    export(drugs, repository)
    assert served_labels(repository) == DRUG_LABELS
    restarted = up(products, repository, run_dir, ports)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    try:
        assert "is up to date" not in restarted.stdout and "files changed" in restarted.stdout, restarted.stdout
        assert_serves_products(ports[1])
    finally:
        stop_as_told(restarted, run_dir, ports)
