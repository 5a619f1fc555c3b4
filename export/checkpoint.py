"""Reads a token-classification checkpoint directory: the network, its labels, its CRF and its tokenizer.

Layout (Hugging Face style): ``config.json`` with ``id2label``; weights; tokenizer files that
``AutoTokenizer.from_pretrained`` reads; optionally ``crf.safetensors`` with ``transitions`` [C, C],
``start_transitions`` [C] and ``end_transitions`` [C].
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ner_pipeline.crf import CrfParameters
from ner_pipeline.tagging import detect_scheme

from .architectures import PROJECT_ARCHITECTURES

CRF_FILE = "crf.safetensors"
CRF_KEYS = ("transitions", "start_transitions", "end_transitions")


class CheckpointError(ValueError):
    """A checkpoint the exporter cannot read, with what was found."""


@dataclass
class Checkpoint:
    directory: Path
    model: object  # torch.nn.Module: forward(input_ids, attention_mask) -> emissions [B, L, C]
    labels: list[str]
    scheme: str
    crf: CrfParameters | None
    tokenizer: object  # transformers fast tokenizer
    model_type: str


class EmissionsOnly(torch.nn.Module):
    """A Hugging Face token classifier that returns the logits tensor alone, as the ONNX encoder does."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


def _labels(config: dict, directory: Path) -> list[str]:
    id2label = config.get("id2label")
    if not id2label:
        raise CheckpointError(f"{directory / 'config.json'} has no id2label; found keys {sorted(config)}")
    return [id2label[str(i)] if str(i) in id2label else id2label[i] for i in range(len(id2label))]


def _load_crf(directory: Path, n_labels: int) -> CrfParameters | None:
    path = directory / CRF_FILE
    if not path.exists():
        return None
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    missing = [k for k in CRF_KEYS if k not in tensors]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; found {sorted(tensors)}")
    crf = CrfParameters(*(tensors[k].astype(np.float64) for k in CRF_KEYS))
    if crf.transitions.shape != (n_labels, n_labels):
        raise CheckpointError(f"{path}: transitions have shape {crf.transitions.shape}, expected {(n_labels, n_labels)}")
    return crf


def load_tokenizer(directory: Path):
    """The fast tokenizer, always from the directory: a bare vocab file silently builds a wrong vocabulary."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if not getattr(tokenizer, "is_fast", False):
        raise CheckpointError(f"{directory}: no fast tokenizer could be built from the tokenizer files")
    if len(tokenizer) < 1000:
        raise CheckpointError(f"{directory}: the tokenizer has only {len(tokenizer)} tokens; is vocab.txt there?")
    return tokenizer


def load_checkpoint(directory: Path) -> Checkpoint:
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{directory} has no config.json; found {sorted(p.name for p in directory.iterdir())}")
    config = json.loads(config_path.read_text())
    labels = _labels(config, directory)
    model_type = config.get("model_type", "")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if model_type in PROJECT_ARCHITECTURES:
        module_name, class_name = PROJECT_ARCHITECTURES[model_type].split(":")
        model = getattr(importlib.import_module(module_name), class_name).from_pretrained(directory).eval()
    else:
        from transformers import AutoModelForTokenClassification

        try:
            hf_model = AutoModelForTokenClassification.from_pretrained(str(directory), attn_implementation="eager")
        except (ValueError, OSError, KeyError) as err:
            raise CheckpointError(f"{directory}: model_type {model_type!r} is not a loadable token classifier: {err}")
        model = EmissionsOnly(hf_model).eval()
    return Checkpoint(
        directory=directory,
        model=model,
        labels=labels,
        scheme=detect_scheme(labels),
        crf=_load_crf(directory, len(labels)),
        tokenizer=load_tokenizer(directory),
        model_type=model_type,
    )
