"""The sentences static INT8 is calibrated on: training text only, never a test set.

By default the training part of MSRA train (the sentences before the dev split, ``ner_model.data.DEV_SENTENCES``),
taken evenly spaced so that every part of the corpus is represented; or a file of the user's (one text per line, or a
``char<TAB>tag`` BIO file) for a checkpoint trained on other text. Rows are encoded by the serving tokenizer and
window rules, so the calibrated ranges are those of the rows the encoder will see, padding included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ner_model.data import DEV_SENTENCES, msra_file, read_bio
from ner_pipeline.windows import WindowConfig, encode_texts

from .errors import CheckpointError


@dataclass(frozen=True)
class CalibrationConfig:
    file: Path | None = None  # None: the training part of MSRA train in data_dir
    data_dir: Path | None = None  # None: ner_model.data.default_data_dir()
    texts: int = 512
    rows_per_call: int = 8


def _read_texts(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if any("\t" in line for line in lines[:50]):  # a BIO file: char<TAB>tag per line
        return ["".join(chars) for chars, _ in read_bio(path)]
    return [line for line in lines if line.strip()]


def calibration_texts(cfg: CalibrationConfig) -> tuple[str, list[str]]:
    """(where they come from, ``cfg.texts`` texts spread evenly over the source)."""
    if cfg.file is not None:
        source, texts = str(cfg.file), _read_texts(cfg.file)
    else:
        path = msra_file("train", cfg.data_dir)
        if not path.exists():
            raise CheckpointError(f"static INT8 calibrates on training text and {path} does not exist: set "
                                  "NER_DATA_DIR, give --calibration-file, or choose --quantization dynamic")
        source = f"{path} (training part, before the last {DEV_SENTENCES} dev sentences)"
        texts = ["".join(chars) for chars, _ in read_bio(path)[:-DEV_SENTENCES]]
    if not texts:
        raise CheckpointError(f"no calibration text in {source}")
    step = max(1, len(texts) // cfg.texts)
    return source, texts[::step][: cfg.texts]


def calibration_rows(tokenizer, texts: list[str], window: WindowConfig,
                     rows_per_call: int) -> Iterator[dict[str, np.ndarray]]:
    """Encoder inputs of ``texts``, ``rows_per_call`` texts per call, as the tokenizer model lays them out."""
    for start in range(0, len(texts), rows_per_call):
        batch = encode_texts(tokenizer, texts[start : start + rows_per_call], window)
        yield {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
