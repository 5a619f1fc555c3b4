"""The model hash: one sha256 per ensemble over everything of a written repository that shapes that ensemble's answers.

For each step of the ensemble (tokenizer, its encoder, decoder), in the order the ensemble runs them: every file of
the step's folder but its ``config.pbtxt`` (the ONNX file, tokenizer.json, labels.json, crf.npz, model.py and the
copied ``ner_pipeline/``), by relative path, and the parameters of that ``config.pbtxt``; then the ensemble's own
parameters. Parameters that only tune speed or memory are left out, so that retuning a deployment keeps its hash;
any other parameter counts, so a new one is covered without a change here.

One hash per ensemble: ``ner`` (INT8) and ``ner_fp32`` run different ONNX files and give different answers, and a
client asks one of them. The hash is written into the ensemble's config as the parameter ``model_hash``
(``sha256:<hex>``) and can be recomputed from the files with :func:`model_hash`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

HASH_PARAMETER = "model_hash"
# Thread counts, arenas and the regrouping of rows into encoder runs: they change speed and memory, not which
# entities come out.
RUNTIME_PARAMETERS = frozenset({
    "intra_op_thread_count", "inter_op_thread_count", "allow_spinning", "enable_cpu_mem_arena", "enable_mem_arena",
    "memory.enable_memory_arena_shrinkage", "trim_after_tokens", "max_tokens_per_run", "run_planning", "run_cost",
    "max_padding_ratio", "concurrent_runs",
})


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_config(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _parameters(config: model_config_pb2.ModelConfig) -> list[tuple[str, str]]:
    return sorted((key, value.string_value) for key, value in config.parameters.items()
                  if key not in RUNTIME_PARAMETERS and key != HASH_PARAMETER)


def model_hash(repository: Path, ensemble: model_config_pb2.ModelConfig | str,
               digests: Mapping[str, str] | None = None) -> str:
    """``sha256:<hex>`` of an ensemble: a parsed config, or its name to read it from the repository. ``digests``
    (sha256 by relative path, as ``write_repository`` returns them) spares hashing large files again."""
    if isinstance(ensemble, str):
        ensemble = parse_config((repository / ensemble / "config.pbtxt").read_text())
    entries: list[list[str]] = []
    steps = dict.fromkeys(step.model_name for step in ensemble.ensemble_scheduling.step)
    for step in steps:
        folder = repository / step
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(repository)
            if path.is_file() and "__pycache__" not in relative.parts and path != folder / "config.pbtxt":
                key = relative.as_posix()
                entries.append(["file", key, digests[key] if digests is not None else sha256(path)])
        config = parse_config((folder / "config.pbtxt").read_text())
        entries += [["parameter", step, key, value] for key, value in _parameters(config)]
    entries += [["parameter", ensemble.name, key, value] for key, value in _parameters(ensemble)]
    return "sha256:" + hashlib.sha256(json.dumps(entries, ensure_ascii=False).encode()).hexdigest()


def written_hash(repository: Path, name: str) -> str:
    """The hash an ensemble's config says it has (its ``model_hash`` parameter)."""
    config = parse_config((repository / name / "config.pbtxt").read_text())
    return config.parameters[HASH_PARAMETER].string_value
