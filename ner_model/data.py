"""The data the default model is trained and scored on: where it lives and how its BIO files read.

The data folder (``NER_DATA_DIR``, default ``../shared/data`` beside the repository) holds ``msra/{train,test}.bio``
and ``vocab/bert-base-chinese-vocab.txt``. It is not redistributed with the project.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ner_client.settings import Setting, SettingGroup

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
VOCAB_NAME = "bert-base-chinese-vocab.txt"
# The last sentences of MSRA train form the dev split; what comes before them is the training text proper.
DEV_SENTENCES = 3000
# What every whitespace character becomes for the model (export/tokenizer_files.py): an unused row of the vocabulary.
WHITESPACE_TOKEN = "[unused1]"

DATA_DIR = Setting("data_dir", DEFAULT_DATA_DIR, "folder holding msra/{train,test}.bio, resume/ and vocab/", type=Path,
                   env="NER_DATA_DIR", shown="../shared/data beside the repository")
# For code without a command line of its own (tests, benchmarks, the synthetic model): the one setting, read through
# the settings layer like any command's.
ENVIRONMENT = SettingGroup("NER_", (DATA_DIR,), "data")


def default_data_dir() -> Path:
    """``NER_DATA_DIR``, else ``../shared/data`` beside the repository."""
    return ENVIRONMENT.parse([], prog="data").data_dir


def vocab_file(data_dir: Path | None = None) -> Path:
    """The bert-base-chinese vocabulary of ``data_dir`` (default: :func:`default_data_dir`)."""
    return Path(data_dir or default_data_dir()) / "vocab" / VOCAB_NAME


def msra_file(split: str, data_dir: Path | None = None) -> Path:
    """``msra/<split>.bio`` of ``data_dir`` (default: :func:`default_data_dir`)."""
    return Path(data_dir or default_data_dir()) / "msra" / f"{split}.bio"


def write_tokenizer_files(directory, vocab) -> None:
    """Write vocab.txt, tokenizer_config.json and special_tokens_map.json for a bert-base-chinese tokenizer."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vocab, directory / "vocab.txt")
    specials = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,
        "whitespace_token": WHITESPACE_TOKEN,
        **specials,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")


def read_bio(path) -> list[tuple[list[str], list[str]]]:
    """Sentences of a ``char<TAB>tag`` file as (characters, tags); a blank line ends a sentence, an empty tag reads as
    ``O``, and every position holds one code point (offsets are counted in code points)."""
    sentences, chars, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                if chars:
                    sentences.append((chars, tags))
                    chars, tags = [], []
                continue
            char, _, tag = line.partition("\t")
            chars.append(char[:1] or " ")
            tags.append(tag.strip() or "O")
    if chars:
        sentences.append((chars, tags))
    return sentences
