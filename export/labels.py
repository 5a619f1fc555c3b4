"""Where a checkpoint keeps its label names, and checks that they name tags the decoder can read.

Hugging Face checkpoints: ``config.json`` ``id2label``.

ModelScope checkpoints (RaNER ``transformer-crf`` and token classifiers): the first of these that exists wins, in
the order of ``modelscope/utils/hub.py::parse_label_mapping`` -- ``label_mapping.json`` (label → id);
``configuration.json`` ``model.label2id``, then ``model.id2label``; ``preprocessor.label2id``, then
``preprocessor.id2label``; ``config.json`` ``label2id``, then ``id2label``. AdaSeq writes the same information as
``model.id_to_label`` and ``preprocessor.label_to_id`` (``adaseq/models/sequence_labeling_model.py``,
``adaseq/data/preprocessors/nlp_preprocessor.py``); those spellings are read at the same level as ModelScope's.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

from ner_pipeline.tagging import detect_scheme, parse_label, unmatched_tags

from .errors import CheckpointError

LABEL_MAPPING_FILE = "label_mapping.json"
MODELSCOPE_CONFIGURATION = "configuration.json"
HF_CONFIG = "config.json"
_PLACEHOLDER = re.compile(r"^LABEL_\d+$")


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not readable JSON: {err}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} holds a {type(value).__name__}, not a JSON object")
    return value


def _ordered(mapping: dict, by_label: bool, where: str) -> list[str]:
    """Label names ordered by id, from label → id (``by_label``) or id → label; ids must be exactly 0..n-1."""
    try:
        if by_label:
            pairs = {int(v): str(k) for k, v in mapping.items()}
        else:
            pairs = {int(k): str(v) for k, v in mapping.items()}
    except (TypeError, ValueError):
        raise CheckpointError(f"{where} has ids that are not integers: {mapping}") from None
    if len(pairs) != len(mapping) or sorted(pairs) != list(range(len(pairs))):
        raise CheckpointError(f"{where} does not number its labels 0..{len(mapping) - 1}: {mapping}")
    return [pairs[i] for i in range(len(pairs))]


def huggingface_labels(directory: Path) -> tuple[list[str], str]:
    config = read_json(directory / HF_CONFIG)
    id2label = config.get("id2label")
    where = f"{directory / HF_CONFIG} id2label"
    if not id2label:
        raise CheckpointError(f"{directory / HF_CONFIG} has no id2label; found keys {sorted(config)}")
    return _ordered(id2label, by_label=False, where=where), where


def modelscope_labels(directory: Path) -> tuple[list[str], str]:
    """Labels by ModelScope's lookup order (see the module docstring), and where they were found."""
    path = directory / LABEL_MAPPING_FILE
    if path.exists():
        return _ordered(read_json(path), by_label=True, where=str(path)), str(path)
    candidates: list[tuple[Path, str, str, bool]] = []  # (file, section, key, maps label → id)
    for section, keys in (("model", ("label2id", "id2label", "id_to_label")),
                          ("preprocessor", ("label2id", "id2label", "label_to_id"))):
        for key in keys:
            candidates.append((directory / MODELSCOPE_CONFIGURATION, section, key, key in ("label2id", "label_to_id")))
    candidates += [(directory / HF_CONFIG, "", "label2id", True), (directory / HF_CONFIG, "", "id2label", False)]
    looked = []
    for file, section, key, by_label in candidates:
        if not file.exists():
            continue
        config = read_json(file)
        holder = config.get(section) if section else config
        where = f"{file} {section + '.' if section else ''}{key}"
        looked.append(where)
        if isinstance(holder, dict) and holder.get(key):
            return _ordered(holder[key], by_label=by_label, where=where), where
    raise CheckpointError(
        f"{directory}: no label names found; looked for {LABEL_MAPPING_FILE} and in {', '.join(looked) or 'nothing'}"
    )


def check_labels(labels: list[str], where: str) -> None:
    """Every label must read as O or <prefix>-<TYPE> (placeholder names cannot give a tag scheme), and every tag must
    be able to take part in an entity under strict chunking (``ner_pipeline.tagging.unmatched_tags``)."""
    if all(_PLACEHOLDER.match(label) for label in labels):
        raise CheckpointError(f"{where} holds placeholder names {labels[:3]}...; the checkpoint does not say which "
                              "tag each output is")
    prefixes = set()
    for label in labels:
        try:
            prefixes.add(parse_label(label).prefix)
        except ValueError as err:
            raise CheckpointError(f"{where}: {err}") from None
    # The decoder chunks BIO, or BIOES/BMES where a multi-word span must close with E. With S but no E (BIOS, as
    # CLUENER models use) or E but no S, strict chunking would silently drop spans: refuse instead.
    if ("S" in prefixes) != ("E" in prefixes):
        have = "S" if "S" in prefixes else "E"
        raise CheckpointError(f"{where}: the labels use {have}- tags without {'E' if have == 'S' else 'S'}- tags "
                              f"(prefixes {sorted(prefixes)}); the decoder reads BIO, BIOES and BMES only")
    unmatched = unmatched_tags(labels)
    if unmatched:
        types = {parse_label(label).type for label in labels} - {""}
        problems, suggested = [], set()
        for label, needed in unmatched:
            problem = f"{label} has no {needed}"
            entity_type = parse_label(label).type
            if parse_label(label).continues and entity_type not in suggested:  # a type that cannot open a span
                suggested.add(entity_type)                                        # is the likely typo
                close = difflib.get_close_matches(entity_type, sorted(types - {entity_type}), n=1, cutoff=0.6)
                problem += f" (is it a typo of {close[0]}?)" if close else ""
            problems.append(problem)
        rule = ("an I- tag only continues a span its type's B- tag opened" if detect_scheme(labels) == "BIO" else
                "a span opens with its type's B- tag and closes with its E- tag")
        raise CheckpointError(f"{where}: {'; '.join(problems)}: the decoder would cut or drop these entities, as "
                              f"{rule} (labels: {', '.join(labels)})")
