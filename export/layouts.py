"""Checkpoint layouts: which files and state-dict keys hold the encoder, the emission head and the CRF.

Every supported layout is a transformer encoder, a linear emission head over its last hidden state, and optionally a
linear-chain CRF whose tags are the labels (``transitions[i, j]`` scores tag i → tag j; start and end vectors). They
differ in file names, key prefixes and where the label names live:

- ``huggingface``: a Hugging Face token classifier (``config.json`` with ``id2label``; e.g. ``bert.*`` +
  ``classifier.*``), CRF optional in ``crf.safetensors`` or as ``crf.*`` keys of the weights;
- ``modelscope-transformer-crf``: ``encoder.*`` + ``head.linear.*`` + ``head.crf.*``;
- ``modelscope-transformer-crf (legacy keys)``: ``encoder.*`` + ``linear.*`` + ``crf.*``;
- ``modelscope-token-classification``: ``encoder.*`` + ``head.classifier.*``, no CRF;
- ``adaseq-sequence-labeling``: ``embedder.transformer_model.*`` + ``linear.*``, CRF optional as ``crf.*``.

Public sources (modelscope/modelscope unless noted): legacy ``TransformerCRF`` --
``modelscope/models/nlp/nncrf_for_named_entity_recognition.py`` (later ``task_models/``); current head --
``modelscope/models/nlp/heads/crf_head.py`` and ``task_models/token_classification.py``, whose loader
(``task_models/task_model.py``, ``utils/checkpoint.py``) adds ``head.`` to legacy head keys and renames ``gamma`` →
``weight``, ``beta`` → ``bias``; token classifier head -- ``heads/token_classification_head.py``; AdaSeq --
modelscope/AdaSeq ``adaseq/models/sequence_labeling_model.py`` and ``adaseq/modules/embedders/transformer_embedder.py``.

Weights: ``model.safetensors`` or ``pytorch_model.bin`` (or their sharded ``*.index.json`` forms), read with
``weights_only`` so that no pickled code runs. The ``modelscope`` package is not needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ner_pipeline.crf import CrfParameters

from .errors import CheckpointError
from .labels import HF_CONFIG, MODELSCOPE_CONFIGURATION, read_json

CRF_FILE = "crf.safetensors"
CRF_KEYS = ("transitions", "start_transitions", "end_transitions")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# StructBERT's config.json says "structbert", which Hugging Face does not know; its backbone is BERT's
# (modelscope/models/nlp/structbert/backbone.py). These fields only drive its adversarial training.
MODEL_TYPE_ALIASES = {"structbert": "bert"}
TRAINING_ONLY_FIELDS = ("adv_grad_factor", "sigma", "adv_bound")


@dataclass(frozen=True)
class Layout:
    name: str
    encoder_prefix: str
    head_prefix: str
    crf_prefix: str | None
    crf_required: bool
    labels_from: str  # "modelscope" (lookup order of parse_label_mapping) or "huggingface" (config.json id2label)


MODELSCOPE_CRF = Layout("modelscope-transformer-crf", "encoder.", "head.linear.", "head.crf.", True, "modelscope")
MODELSCOPE_CRF_LEGACY = Layout("modelscope-transformer-crf (legacy keys)", "encoder.", "linear.", "crf.", True,
                               "modelscope")
MODELSCOPE_TOKEN_CLS = Layout("modelscope-token-classification", "encoder.", "head.classifier.", None, False,
                              "modelscope")
ADASEQ = Layout("adaseq-sequence-labeling", "embedder.transformer_model.", "linear.", "crf.", False, "modelscope")
HUGGINGFACE = Layout("huggingface", "", "", "crf.", False, "huggingface")
# A ModelScope token classifier saved with Hugging Face key names (StructBERT's ``bert.*`` + ``classifier.*``,
# modelscope/models/nlp/structbert/token_classification.py): loads as Hugging Face, labels by ModelScope's order.
MODELSCOPE_HF_KEYS = Layout("modelscope-token-classification (Hugging Face keys)", "", "", "crf.", False, "modelscope")
ENCODER_LAYOUTS = (MODELSCOPE_CRF, MODELSCOPE_CRF_LEGACY, MODELSCOPE_TOKEN_CLS, ADASEQ)


@dataclass
class LoadedModel:
    model: torch.nn.Module  # forward(input_ids, attention_mask) -> emissions [B, L, C]
    layout: Layout
    num_outputs: int
    vocab_rows: int | None
    crf: CrfParameters | None
    model_type: str


class EmissionsOnly(torch.nn.Module):
    """A Hugging Face token classifier that returns the logits tensor alone, as the ONNX encoder does."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


class TransformerTagger(torch.nn.Module):
    """Encoder + linear emission head, as ModelScope's TransformerCRF and AdaSeq's SequenceLabelingModel compute
    emissions at inference (dropout off; token type ids all zero; absolute positions)."""

    def __init__(self, encoder: torch.nn.Module, head: torch.nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden)


# ---------------------------------------------------------------------------------------------------- weights


def weight_files(directory: Path) -> list[Path]:
    return [directory / name for name in WEIGHT_FILES if (directory / name).exists()]


def _load_one(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling error names what was refused
        raise CheckpointError(f"{path} is not a plain state dict that loads with weights_only=True: {err}") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a ModelScope training checkpoint: {"meta", "state_dict", "optimizer"}
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    not_tensors = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {not_tensors[:5]}")
    return dict(loaded)


def read_state_dict(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The weights of the first weight file present (safetensors first, as Hugging Face does), keys normalised."""
    files = weight_files(directory)
    if not files:
        raise CheckpointError(f"{directory} has no weights ({', '.join(WEIGHT_FILES)}); found "
                              f"{sorted(p.name for p in directory.iterdir())}")
    path = files[0]
    if path.name.endswith(".index.json"):
        shards = sorted(set(read_json(path).get("weight_map", {}).values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_load_one(directory / shard))
    else:
        state = _load_one(path)
    return normalise_keys(state), path


def normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LayerNorm ``gamma``/``beta`` → ``weight``/``bias`` (old TensorFlow-style names, renamed by ModelScope's and
    Hugging Face's loaders alike); floating tensors to float32."""
    out = {}
    for key, value in state.items():
        if key.endswith(".gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith(".beta"):
            key = key[: -len("beta")] + "bias"
        out[key] = value.float() if value.is_floating_point() else value
    return out


def describe_keys(keys) -> str:
    """``encoder.* (197), linear.* (2)``: what a state dict holds, by its first two key components."""
    def group(key: str) -> str:
        return ".".join(key.split(".")[:2]) if key.count(".") > 1 else key.split(".")[0]

    groups = Counter(group(k) for k in keys)
    one_key = {group(k): k for k in keys if groups[group(k)] == 1}
    shown = ", ".join(f"{prefix}.* ({n})" if n > 1 else one_key[prefix] for prefix, n in sorted(groups.items())[:12])
    return (shown + (", ..." if len(groups) > 12 else "")) or "no keys"


def _ignorable(key: str) -> bool:
    """Keys no emission depends on: the saved position-id buffer and the pooler."""
    return key.endswith("embeddings.position_ids") or key.startswith("pooler.") or ".pooler." in key


# ---------------------------------------------------------------------------------------------------- detection


def detect_layout(keys: set[str]) -> Layout | None:
    """The encoder layout whose encoder and head keys are all there, or None (then try Hugging Face)."""
    for layout in ENCODER_LAYOUTS:
        encoder_marker = f"{layout.encoder_prefix}embeddings.word_embeddings.weight"
        if encoder_marker in keys and f"{layout.head_prefix}weight" in keys:
            return layout
    return None


def unsupported(directory: Path, keys, weights: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"{directory}: unsupported checkpoint layout ({detail}). {weights.name} holds {describe_keys(keys)}. "
        "Supported: Hugging Face token classifiers (config.json + e.g. bert.* and classifier.*), ModelScope RaNER "
        "transformer-crf (encoder.* with head.linear.*/head.crf.* or legacy linear.*/crf.*), ModelScope token "
        "classifiers (encoder.* + head.classifier.*), AdaSeq sequence labelling (embedder.transformer_model.* + "
        "linear.* [+ crf.*])"
    )


# ---------------------------------------------------------------------------------------------------- config


def transformer_config(directory: Path, what: str):
    """The encoder's Hugging Face config from ``config.json``; ``structbert`` is read as ``bert``."""
    from transformers import AutoConfig

    path = directory / HF_CONFIG
    if not path.exists():
        raise CheckpointError(f"{directory}: {what} needs the encoder's config.json, which is missing")
    config = read_json(path)
    model_type = config.get("model_type")
    if not model_type:
        raise CheckpointError(f"{path} names no model_type; found keys {sorted(config)}")
    config = {k: v for k, v in config.items() if k not in ("model_type", "transformers_version", "architectures")}
    if model_type in MODEL_TYPE_ALIASES:
        config = {k: v for k, v in config.items() if k not in TRAINING_ONLY_FIELDS}
    try:
        hf_config = AutoConfig.for_model(MODEL_TYPE_ALIASES.get(model_type, model_type), **config)
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: model_type {model_type!r} is not one Hugging Face transformers knows: {err}")
    hf_config._attn_implementation = "eager"  # the TorchScript ONNX exporter traces eager attention reliably
    return hf_config, model_type


# ---------------------------------------------------------------------------------------------------- CRF


def crf_from(tensors: dict[str, torch.Tensor], where: str, n_labels: int) -> CrfParameters:
    missing = [k for k in CRF_KEYS if k not in tensors]
    extra = sorted(set(tensors) - set(CRF_KEYS))
    if missing or extra:
        raise CheckpointError(f"{where}: CRF parameters should be {list(CRF_KEYS)}; missing {missing}, "
                              f"unknown {extra}")
    crf = CrfParameters(*(tensors[k].detach().double().numpy().astype(np.float64) for k in CRF_KEYS))
    shapes = (crf.transitions.shape, crf.start_transitions.shape, crf.end_transitions.shape)
    if shapes != ((n_labels, n_labels), (n_labels,), (n_labels,)):
        raise CheckpointError(f"{where}: CRF shapes {shapes} do not fit {n_labels} labels (a CRF with extra "
                              "START/STOP tags is not this layout)")
    return crf


def _split_prefix(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _load_strict(module: torch.nn.Module, state: dict, what: str, directory: Path) -> None:
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatches
        raise CheckpointError(f"{directory}: the {what} weights do not fit its config: {err}") from None
    if missing or unexpected:
        raise CheckpointError(f"{directory}: the {what} weights do not match its config; missing {sorted(missing)[:8]}"
                              f"{' ...' if len(missing) > 8 else ''}, unexpected {sorted(unexpected)[:8]}"
                              f"{' ...' if len(unexpected) > 8 else ''}")


# ---------------------------------------------------------------------------------------------------- loaders


def _adaseq_checks(directory: Path, keys: set[str]) -> None:
    """AdaSeq options the served pipeline cannot reproduce are refused, not approximated."""
    if any(k.startswith("encoder.") for k in keys):
        raise CheckpointError(f"{directory}: this AdaSeq model has an encoder module between the embedder and the "
                              "linear head (keys encoder.*), which the exporter does not support")
    if any(k.startswith("embedder._scalar_mix") for k in keys):
        raise CheckpointError(f"{directory}: this AdaSeq embedder mixes all layers (scalar_mix), which the exporter "
                              "does not support")
    configuration = directory / MODELSCOPE_CONFIGURATION
    if configuration.exists():
        embedder = (read_json(configuration).get("model") or {}).get("embedder") or {}
        mode = embedder.get("sub_token_mode", "first") if isinstance(embedder, dict) else "first"
        if mode != "first":
            raise CheckpointError(f"{configuration}: model.embedder.sub_token_mode is {mode!r}; the served decoder "
                                  "scores the first sub-token of each word only")


def load_encoder_layout(directory: Path, layout: Layout, state: dict[str, torch.Tensor], weights: Path) -> LoadedModel:
    from transformers import AutoModel

    keys = set(state)
    if layout is ADASEQ:
        _adaseq_checks(directory, keys)
    owned = [layout.encoder_prefix, layout.head_prefix] + ([layout.crf_prefix] if layout.crf_prefix else [])
    stray = sorted(k for k in keys if not any(k.startswith(p) for p in owned))
    if stray:
        raise unsupported(directory, keys, weights, f"{layout.name} keys plus unknown ones: {stray[:6]}")

    config, model_type = transformer_config(directory, f"a {layout.name} checkpoint")
    try:
        encoder = AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler option
        encoder = AutoModel.from_config(config)
    expected = set(encoder.state_dict())
    encoder_state = {k: v for k, v in _split_prefix(state, layout.encoder_prefix).items()
                     if k in expected or not _ignorable(k)}
    _load_strict(encoder, encoder_state, f"{layout.name} encoder ({model_type})", directory)

    head_state = _split_prefix(state, layout.head_prefix)
    if set(head_state) != {"weight", "bias"} or head_state["weight"].dim() != 2:
        raise CheckpointError(f"{directory}: the emission head {layout.head_prefix}* should be a linear layer; "
                              f"found {sorted(head_state)}")
    rows, width = head_state["weight"].shape
    if width != config.hidden_size:
        raise CheckpointError(f"{directory}: {layout.head_prefix}weight is {rows}x{width} but the encoder's hidden "
                              f"size is {config.hidden_size}")
    head = torch.nn.Linear(width, rows)
    _load_strict(head, head_state, "emission head", directory)

    crf = None
    crf_state = _split_prefix(state, layout.crf_prefix) if layout.crf_prefix else {}
    if crf_state:
        crf = crf_from(crf_state, f"{weights.name} {layout.crf_prefix}*", rows)
    elif layout.crf_required:
        raise CheckpointError(f"{directory}: a {layout.name} checkpoint must hold {layout.crf_prefix}* CRF parameters; "
                              f"{weights.name} holds {describe_keys(keys)}")
    vocab_rows = encoder.get_input_embeddings().weight.shape[0]
    return LoadedModel(TransformerTagger(encoder, head).eval(), layout, rows, vocab_rows, crf, model_type)


def load_huggingface(directory: Path, state: dict[str, torch.Tensor], weights: Path) -> LoadedModel:
    """A Hugging Face token classifier; a CRF either in ``crf.safetensors`` or as ``crf.*`` keys of the weights."""
    from transformers import AutoModelForTokenClassification

    keys = set(state)
    if not (directory / HF_CONFIG).exists():
        raise unsupported(directory, keys, weights, "no config.json, and the keys match no ModelScope or AdaSeq layout")
    config, model_type = transformer_config(directory, "a Hugging Face checkpoint")
    head = state.get("classifier.weight")
    if head is not None and head.dim() == 2 and head.shape[0] != config.num_labels:
        # The label count is the head's: config.json may lack id2label (labels elsewhere) or disagree, which the
        # label check reports by name.
        config.num_labels = int(head.shape[0])
    try:
        hf_model = AutoModelForTokenClassification.from_config(config)
    except ValueError as err:
        raise CheckpointError(f"{directory}: no Hugging Face token classifier can be built for model_type "
                              f"{model_type!r} from config.json: {err}") from None
    crf_state = _split_prefix(state, "crf.")
    expected = set(hf_model.state_dict())
    model_state = {k: v for k, v in state.items() if not k.startswith("crf.") and (k in expected or not _ignorable(k))}
    if not expected & set(model_state):
        raise unsupported(directory, keys, weights, f"no key matches a {type(hf_model).__name__}")
    _load_strict(hf_model, model_state, f"Hugging Face {type(hf_model).__name__}", directory)
    rows = config.num_labels
    crf = None
    if crf_state:
        crf = crf_from(crf_state, f"{weights.name} crf.*", rows)
    if (directory / CRF_FILE).exists():
        if crf is not None:
            raise CheckpointError(f"{directory}: two CRFs, {CRF_FILE} and crf.* keys in {weights.name}; keep one")
        from safetensors.torch import load_file

        crf = crf_from(load_file(str(directory / CRF_FILE)), str(directory / CRF_FILE), rows)
    vocab_rows = hf_model.get_input_embeddings().weight.shape[0]
    layout = MODELSCOPE_HF_KEYS if (directory / MODELSCOPE_CONFIGURATION).exists() else HUGGINGFACE
    return LoadedModel(EmissionsOnly(hf_model).eval(), layout, rows, vocab_rows, crf, model_type)


def load_weights_layout(directory: Path) -> LoadedModel:
    """Detects the layout from the weights' keys and loads it."""
    state, weights = read_state_dict(directory)
    layout = detect_layout(set(state))
    if layout is not None:
        return load_encoder_layout(directory, layout, state, weights)
    return load_huggingface(directory, state, weights)

