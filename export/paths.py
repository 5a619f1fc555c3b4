"""Where the project's inputs live; every location can be overridden from the environment."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """The folder holding ``msra/`` and ``vocab/`` (``NER_DATA_DIR``, default ``../shared/data``)."""
    return Path(os.environ.get("NER_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def vocab_file() -> Path:
    """The bert-base-chinese vocabulary (``NER_VOCAB_FILE``)."""
    return Path(os.environ.get("NER_VOCAB_FILE", shared_data_dir() / "vocab" / "bert-base-chinese-vocab.txt"))


def msra_file(split: str) -> Path:
    return shared_data_dir() / "msra" / f"{split}.bio"
