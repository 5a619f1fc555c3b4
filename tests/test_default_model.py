"""The shipped default model, exported and served as the README's first command does, scored through Triton on a
fixed slice of MSRA test, clean and with noise (evaluation/robustness.py: pieces in 5 % of the gaps, and joined
sentences): each F1 must stay within 0.5 points of the figure recorded beside the model card. And the card's training
command is the one recorded in the checkpoint, with a teacher a clean clone can use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from export.pipeline import export_checkpoint
from ner_client import NerClient
from ner_model.data import REPO_ROOT
from export.repository import RepositoryConfig
from serving.server import ServerConfig, TritonServer, free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]

DEFAULT_MODEL = REPO_ROOT / "models" / "default"
CARD_SCORES = DEFAULT_MODEL / "eval_msra_test_slice.json"
NOISY_CARD_SCORES = DEFAULT_MODEL / "eval_msra_test_noisy_slice.json"
# how eval_msra_test_noisy_slice.json was made, with --url of a server of the default model and --output
NOISY_SLICE = ("--split", "test", "--limit", "500", "--kinds", "emoji,rare,latin,joined", "--rates", "0.05",
               "--seed", "0", "--fixture", "")


@pytest.fixture(scope="module")
def served_default(tmp_path_factory):
    repository = tmp_path_factory.mktemp("default") / "model_repository"
    export_checkpoint(DEFAULT_MODEL, repository, RepositoryConfig())
    server = TritonServer(ServerConfig(model_repository=repository, http_port=free_port(), grpc_port=free_port(),
                                       metrics_port=free_port(), log_file=repository.parent / "tritonserver.log"))
    server.start(timeout=180)
    yield server, repository
    server.stop()


def test_default_model_slice_f1_is_within_half_a_point_of_its_card(served_default, tmp_path):
    server, repository = served_default
    card = json.loads(CARD_SCORES.read_text())
    output = tmp_path / "slice.json"
    result = subprocess.run(
        [sys.executable, "-m", "evaluation", "--url", server.grpc_url, "--offset", str(card["offset"]),
         "--limit", str(card["sentences"]), "--in-process", str(repository), "--output", str(output)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["sentences"] == card["sentences"]
    for model in ("ner", "ner_fp32"):
        floor = 100 * card["models"][model]["overall"]["f1"] - 0.5
        assert 100 * report["models"][model]["overall"]["f1"] >= floor, model
    # The serving path loses nothing: the served FP32 F1 equals the same ONNX file and decoder run in process.
    assert report["served_fp32_equals_in_process"] is True


def test_default_model_noisy_slice_f1_is_within_half_a_point_of_its_card(served_default, tmp_path):
    server, _ = served_default
    card = json.loads(NOISY_CARD_SCORES.read_text())
    output = tmp_path / "noisy.json"
    result = subprocess.run(
        [sys.executable, "-m", "evaluation.robustness", *NOISY_SLICE, "--url", server.grpc_url, "--output",
         str(output)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["rows"] == card["rows"]  # the same perturbed texts
    for model in ("ner", "ner_fp32"):
        rows = report["models"][model]
        assert set(rows) == {"clean", "emoji 5%", "rare 5%", "latin 5%", "joined", "joined 5%"}
        for row, scores in rows.items():
            floor = 100 * card["models"][model][row]["overall"]["f1"] - 0.5
            assert 100 * scores["overall"]["f1"] >= floor, (model, row)


@pytest.mark.parametrize("text, expected", [
    ("张三 李四都来了。", [("PER", "张三"), ("PER", "李四")]),
    ("马云\n阿里巴巴集团", [("PER", "马云"), ("ORG", "阿里巴巴集团")]),
    ("会议在北京\n上海代表团出席。", [("LOC", "北京"), ("ORG", "上海代表团")]),
    ("[PAD]张三[SEP]李四都来了。", [("PER", "张三"), ("PER", "李四")]),  # special tokens typed in are text
])
def test_whitespace_and_typed_special_tokens_for_the_default_model(served_default, text, expected):
    """The default model sees whitespace (its whitespace_token): a space or line break ends an entity. A "[SEP]" or
    "[PAD]" typed in the text is text, not a token that would end the row or read as padding."""
    server, _ = served_default
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        with NerClient(url, protocol) as ner:
            assert [(e.type, e.span) for e in ner.extract(text)] == expected, protocol


# ------------------------------------------------------------------------------------------- the card's recipe

def _card_command(card: str, prog: str) -> list[str]:
    """The arguments of the card's one ``python -m <prog>`` command (continuation lines joined)."""
    import shlex

    text = card.replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.strip().startswith(f"python -m {prog} ")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].split("#")[0])[3:]


def test_the_card_s_training_command_is_the_one_that_made_the_weights():
    """The model card's distillation command parses to the training settings recorded in the checkpoint, and its
    teacher (the committed models/teacher) is accepted for the student's tokenizer as a clean clone would meet it,
    with no cached soft labels."""
    from export.checkpoint import load_tokenizer
    from training.distill import DISTILL_SETTINGS, load_teacher
    from training.train import training_config

    args = DISTILL_SETTINGS.parse(_card_command((DEFAULT_MODEL / "README.md").read_text(), "training.distill"),
                                  prog="python -m training.distill")
    config = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert json.loads(json.dumps(training_config(args), default=str)) == config["training"]
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    _, order = load_teacher(REPO_ROOT / args.teacher, load_tokenizer(DEFAULT_MODEL), labels)
    assert sorted(order) == list(range(len(labels)))
