"""Session fixtures: tiny models trained to tag a known lexicon, exported by the project's exporter, and served by
a real tritonserver on free loopback ports (one server per model, started once per test session)."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from export.checkpoint import Checkpoint, load_checkpoint, load_tokenizer as load_checkpoint_tokenizer
from export.pipeline import export_checkpoint
from export.repository import RepositoryConfig
from export.synthetic import build
from ner_pipeline import load_tokenizer
from reference import ReferenceTagger
from serving.server import REPO_ROOT, ServerConfig, TritonServer, free_port

pytest_plugins = ["lanes"]  # test lanes and --update-golden

CACHE = REPO_ROOT / "build" / "test-cache"


@pytest.fixture(scope="session")
def default_tokenizer():
    """The fast tokenizer of models/default, as the exporter builds it."""
    return load_checkpoint_tokenizer(REPO_ROOT / "models" / "default")


def tiny_checkpoint(scheme: str, crf: bool) -> Path:
    """Trains the tiny model once per version of its recipe; later sessions reuse it."""
    # the tokenizer it trains through is part of the recipe
    sources = ("export/synthetic.py", "export/tokenizer_files.py", "ner_model/data.py")
    recipe = b"".join((REPO_ROOT / source).read_bytes() for source in sources) + f"{scheme}{crf}".encode()
    path = CACHE / f"tiny-{scheme.lower()}-{'crf' if crf else 'argmax'}-{hashlib.sha256(recipe).hexdigest()[:12]}"
    if not (path / "config.json").exists():
        partial = path.with_suffix(f".partial-{os.getpid()}")  # another session may be building it too
        shutil.rmtree(partial, ignore_errors=True)
        build(partial, scheme=scheme, crf=crf, verbose=False)
        try:
            partial.rename(path)
        except OSError:  # the other session finished first: its model is the same
            shutil.rmtree(partial, ignore_errors=True)
            if not (path / "config.json").exists():
                raise
    return path


@dataclass
class ServedModel:
    checkpoint: Checkpoint
    repository: Path
    report: dict
    server: TritonServer
    reference: ReferenceTagger

    @property
    def http_url(self) -> str:
        return self.server.http_url

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url


def serve(tmp_path_factory, scheme: str, crf: bool, repo_cfg: RepositoryConfig = RepositoryConfig()):
    checkpoint_dir = tiny_checkpoint(scheme, crf)
    repository = tmp_path_factory.mktemp(f"repo-{scheme}") / "model_repository"
    report = export_checkpoint(checkpoint_dir, repository, repo_cfg)
    checkpoint = load_checkpoint(checkpoint_dir)
    reference = ReferenceTagger(checkpoint, load_tokenizer(str(repository / "tokenizer" / "1" / "tokenizer.json")),
                                repo_cfg.window)
    server = TritonServer(ServerConfig(model_repository=repository, http_port=free_port(), grpc_port=free_port(),
                                       metrics_port=free_port(), log_file=repository.parent / "tritonserver.log"))
    server.start(timeout=120)
    return ServedModel(checkpoint, repository, report, server, reference)


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """The default shape: BERT + CRF, BIO labels; serves `ner` and `ner_fp32`."""
    model = serve(tmp_path_factory, "BIO", crf=True)
    yield model
    model.server.stop()


@pytest.fixture(scope="session")
def served_bioes(tmp_path_factory):
    """A second shape: BIOES labels, no CRF (argmax)."""
    model = serve(tmp_path_factory, "BIOES", crf=False)
    yield model
    model.server.stop()
