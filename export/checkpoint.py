"""Reads a token-classification checkpoint directory: the network, its labels, its CRF and its tokenizer.

The layout is detected from the files and the weights' key names (see ``export/layouts.py``):

- Hugging Face token classifiers: ``config.json`` with ``id2label``, ``model.safetensors`` or ``pytorch_model.bin``,
  tokenizer files; optionally a CRF in ``crf.safetensors`` (``transitions`` [C, C] previous → next,
  ``start_transitions`` [C], ``end_transitions`` [C]) or as ``crf.*`` keys of the weights. Any label set in BIO,
  BIOES or BMES.
- ModelScope RaNER (``transformer-crf``), current ``head.linear.*``/``head.crf.*`` keys or legacy
  ``linear.*``/``crf.*``; ModelScope token classifiers (``head.classifier.*``); AdaSeq sequence labelling models
  (``embedder.transformer_model.*``). Labels by ModelScope's lookup order (``export/labels.py``).
- The project's own architectures (``export/architectures.py``), by ``config.json`` ``model_type``.

What the checkpoint does not say is read from it, never assumed: the number of labels is the emission head's row
count, the tag scheme comes from the label names, the tokenizer options from ``tokenizer_config.json``.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ner_pipeline.crf import CrfParameters
from ner_pipeline.tagging import detect_scheme

from . import labels as label_files
from . import tokenizer_files
from .architectures import PROJECT_ARCHITECTURES
from .errors import CheckpointError
from .layouts import CRF_FILE, CRF_KEYS, EmissionsOnly, crf_from, load_weights_layout

__all__ = ["CRF_FILE", "CRF_KEYS", "Checkpoint", "CheckpointError", "EmissionsOnly", "load_checkpoint",
           "load_tokenizer"]


@dataclass
class Checkpoint:
    directory: Path
    model: object  # torch.nn.Module: forward(input_ids, attention_mask) -> emissions [B, L, C]
    labels: list[str]
    scheme: str
    crf: CrfParameters | None
    tokenizer: object  # transformers fast tokenizer
    model_type: str
    layout: str = "huggingface"
    labels_source: str = ""
    tokenizer_options: dict = field(default_factory=dict)


def load_tokenizer(directory: Path):
    """The fast tokenizer, always from the directory: a bare vocab file silently builds a wrong vocabulary."""
    return tokenizer_files.load_tokenizer(Path(directory))[0]


def _project_checkpoint(directory: Path, model_type: str) -> Checkpoint:
    module_name, class_name = PROJECT_ARCHITECTURES[model_type].split(":")
    model = getattr(importlib.import_module(module_name), class_name).from_pretrained(directory).eval()
    labels, where = label_files.huggingface_labels(directory)
    label_files.check_labels(labels, where)
    crf = None
    if (directory / CRF_FILE).exists():
        from safetensors.torch import load_file

        crf = crf_from(load_file(str(directory / CRF_FILE)), str(directory / CRF_FILE), len(labels))
    tokenizer, options = tokenizer_files.load_tokenizer(directory)
    return Checkpoint(directory, model, labels, detect_scheme(labels), crf, tokenizer, model_type,
                      layout=f"project ({PROJECT_ARCHITECTURES[model_type]})", labels_source=where,
                      tokenizer_options=options)


def load_checkpoint(directory: Path) -> Checkpoint:
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"{directory} does not exist")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a directory")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config_path = directory / label_files.HF_CONFIG
    if config_path.exists():
        model_type = label_files.read_json(config_path).get("model_type", "")
        if model_type in PROJECT_ARCHITECTURES:
            return _project_checkpoint(directory, model_type)

    loaded = load_weights_layout(directory)
    if loaded.layout.labels_from == "huggingface":
        labels, where = label_files.huggingface_labels(directory)
    else:
        labels, where = label_files.modelscope_labels(directory)
    label_files.check_labels(labels, where)
    if len(labels) != loaded.num_outputs:
        raise CheckpointError(f"{directory}: {where} names {len(labels)} labels but the emission head has "
                              f"{loaded.num_outputs} outputs")
    tokenizer, options = tokenizer_files.load_tokenizer(directory, loaded.vocab_rows)
    with torch.no_grad():  # a cheap end-to-end check before the long export starts
        probe = loaded.model(torch.tensor([[101, 102]]), torch.ones((1, 2), dtype=torch.long))
    if tuple(probe.shape) != (1, 2, len(labels)):
        raise CheckpointError(f"{directory}: the model returns {tuple(probe.shape)} for one row of 2 tokens, "
                              f"expected (1, 2, {len(labels)})")
    return Checkpoint(
        directory=directory,
        model=loaded.model,
        labels=labels,
        scheme=detect_scheme(labels),
        crf=loaded.crf,
        tokenizer=tokenizer,
        model_type=loaded.model_type,
        layout=loaded.layout.name,
        labels_source=where,
        tokenizer_options=options,
    )


def describe(checkpoint: Checkpoint) -> str:
    """One line for logs: layout, model type, labels and where they came from, CRF, tokenizer options (where the
    tokenizer came from, and why, has a line of its own: ``tokenizer_source``)."""
    options = {k: v for k, v in checkpoint.tokenizer_options.items() if k not in ("source", "source_reason")}
    return json.dumps({"layout": checkpoint.layout, "model_type": checkpoint.model_type, "scheme": checkpoint.scheme,
                       "labels": len(checkpoint.labels), "labels_source": checkpoint.labels_source,
                       "crf": checkpoint.crf is not None, "tokenizer": options}, ensure_ascii=False)


def tokenizer_source(checkpoint: Checkpoint) -> str:
    """Which tokenizer files were used, and why."""
    return f"tokenizer from {checkpoint.tokenizer_options['source']} ({checkpoint.tokenizer_options['source_reason']})"
