"""Lays out a Triton model repository from the templates in ``model_repository/``.

    <output>/ner/config.pbtxt, ner/1/            ensemble, INT8 encoder (the default)
    <output>/ner_fp32/config.pbtxt, ner_fp32/1/  ensemble, FP32 encoder
    <output>/tokenizer/1/{model.py, tokenizer.json, ner_pipeline/}
    <output>/encoder_int8/1/model.onnx (+ model.py in the python form), encoder_fp32/ likewise
    <output>/decoder/1/{model.py, labels.json, crf.npz, ner_pipeline/}
    <output>/text_encoder_int8/1/, text_encoder_fp32/1/   tokenizer and encoder in one model (fused form)

An ensemble runs either three steps (tokenizer → encoder_* → decoder) or two (text_encoder_* → decoder); the
tokenizer and encoder models are written in both forms, for clients and tests that call them directly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template

import numpy as np

from ner_pipeline.crf import CrfParameters
from ner_pipeline.runs import RUN_PLANNINGS, RunCost
from ner_pipeline.tagging import entity_types
from ner_pipeline.validation import embedding_rows
from ner_pipeline.windows import WindowConfig

from . import native
from .errors import CheckpointError
from .model_hash import HASH_PARAMETER, model_hash, parse_config, sha256
from .run_cost import graph_run_cost

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = REPO_ROOT / "model_repository"
PIPELINE_PACKAGE = REPO_ROOT / "ner_pipeline"
ENSEMBLES = {"ner": ("encoder_int8", "int8"), "ner_fp32": ("encoder_fp32", "fp32")}
ENCODER_BACKENDS = ("python", "onnxruntime")
PIPELINE_FORMS = ("steps", "fused")
STEPS = (
    ("tokenizer", {"TEXT": "TEXT"},
     {name: name for name in ("input_ids", "attention_mask", "word_spans", "text_index", "source_text")}),
    ("${encoder}", {"input_ids": "input_ids", "attention_mask": "attention_mask"}, {"logits": "logits"}),
    ("decoder", {name: name for name in ("logits", "word_spans", "text_index", "source_text")},
     {"ENTITIES": "ENTITIES"}),
)
FUSED_STEPS = (("text_encoder_${precision}", STEPS[0][1],
                {name: name for name in STEPS[2][1]}), STEPS[2])


@dataclass(frozen=True)
class RepositoryConfig:
    """Serving knobs; docs/benchmarks.md holds the measurements behind each default."""

    encoder_backend: str = "python"  # "onnxruntime" for Triton's native backend (the official container)
    max_texts_per_request: int = 64
    window: WindowConfig = WindowConfig()
    # Encoder layout per precision: instances x ONNX Runtime threads per session, and how many runs one execution
    # sends to its session side by side. None: chosen from the ONNX graph (encoder_layout). The INT8 knobs also set
    # the FP32 encoder's unless its own are given.
    encoder_instances: int | None = None
    intra_op_threads: int | None = None
    concurrent_runs: int | None = None
    fp32_encoder_instances: int | None = None
    fp32_intra_op_threads: int | None = None
    # How each ensemble runs: "steps" (tokenizer, encoder and decoder models) or "fused" (one text_encoder_* model
    # running the tokenizer and the encoder in one process, then the decoder: a hop through Triton fewer). None: fused
    # where the encoder's layout is single-thread instances (its runs cost about what a hop does), steps for a
    # GEMM-bound encoder (tokenising then overlaps its long runs) and on the native backend.
    pipeline: str | None = None
    # A graph whose 64-token row costs at least this (its run cost, export/run_cost.py) and has no recurrent layer
    # is GEMM-bound: one session on both cores. Anything lighter or recurrent gains nothing from a second thread.
    parallel_row_ms: float = 5.0
    # Two instances of each Python step: each keeps its queue bound without the single-instance stall (below), and
    # tokenising and decoding overlap.
    tokenizer_instances: int = 2
    decoder_instances: int = 2
    # Idle ONNX Runtime threads block instead of spinning, leaving the cores to the tokenizer and decoder processes.
    ort_allow_spinning: int = 0
    # No batching delay: the encoder is busy far longer than a delay on a CPU, and the requests that arrive meanwhile
    # form the next batch anyway; a delay only adds latency at low load.
    max_queue_delay_us: int = 0
    # Each model's queue bound (beyond it, an immediate UNAVAILABLE). A model with a single instance gets none: with a
    # `default_queue_policy`, Triton 2.51's batcher leaves some requests waiting for its 500 ms idle wake-up whenever
    # the only instance is busy.
    max_queue_size: int = 256
    queue_timeout_us: int = 30_000_000
    # Python-backend encoder: the rows of a batch are regrouped by real length into runs of at most max_tokens_per_run
    # tokens (which also bounds a run's working memory). run_planning "cost": the cheapest plan under a cost model of
    # one call, derived from the encoder's graph (run_cost "graph", export/run_cost.py; or "per_run,per_position,
    # per_token" ms): on a CPU a call pays for reading the weights whatever its rows, so rows merge where that beats
    # their padding. "ratio": a run is padded at most by max_padding_ratio of its real tokens.
    max_tokens_per_run: int = 2048
    run_planning: str = "cost"
    run_cost: str = "graph"
    max_padding_ratio: float = 0.25
    # ONNX Runtime's CPU arena on (without it, malloc's fragmentation kept more memory under load); a run of at least
    # trim_after_tokens tokens shrinks it back when it ends, and the heap is trimmed.
    enable_cpu_mem_arena: int = 1
    trim_after_tokens: int = 1024
    response_cache: bool = True

    def __post_init__(self) -> None:
        if self.encoder_backend not in ENCODER_BACKENDS:
            raise ValueError(f"encoder_backend must be one of {ENCODER_BACKENDS}, not {self.encoder_backend!r}")
        if self.max_queue_delay_us > 2000:
            raise ValueError("max_queue_delay_us above 2000 would add visible latency at low load")
        counts = (self.encoder_instances, self.fp32_encoder_instances, self.intra_op_threads, self.fp32_intra_op_threads,
                  self.concurrent_runs, self.tokenizer_instances, self.decoder_instances)
        if min(c for c in counts if c is not None) < 1:
            raise ValueError("instances, ONNX Runtime threads and concurrent runs must be at least 1")
        if self.pipeline not in (None, *PIPELINE_FORMS):
            raise ValueError(f"pipeline must be one of {PIPELINE_FORMS}, not {self.pipeline!r}")
        if self.pipeline == "fused" and self.encoder_backend != "python":
            raise ValueError("the fused pipeline is a Python-backend model; the onnxruntime backend needs steps")
        if self.max_padding_ratio < 0 or self.max_tokens_per_run < 1:
            raise ValueError("max_padding_ratio must be >= 0 and max_tokens_per_run >= 1")
        if self.run_planning not in RUN_PLANNINGS:
            raise ValueError(f"run_planning must be one of {RUN_PLANNINGS}, not {self.run_planning!r}")
        if self.run_cost != "graph":
            RunCost.parse(self.run_cost)
        self.request_limits()

    def request_limits(self) -> tuple[int, int]:
        """(texts, rows) one request may carry; on the native backend, bounded by max_tokens_per_run (native.py)."""
        if self.encoder_backend == "python":
            return self.max_texts_per_request, self.window.max_rows_per_request
        return native.request_limits(self.max_texts_per_request, self.window.max_rows_per_request,
                                     self.max_tokens_per_run, max(self.window.length_buckets))

    def _gemm_bound(self, cost: RunCost) -> bool:
        return cost.per_position == 0 and cost.of(1, 64) >= self.parallel_row_ms

    def encoder_layout(self, cost: RunCost, precision: str) -> tuple[int, int, int]:
        """(instances, ONNX Runtime threads per session, concurrent runs per execution) of one precision's encoder.

        GEMM-bound graphs (BERT-family): one instance whose session has both cores' threads, so a lone request gets
        both, and whose executions send two runs side by side, so a busy server keeps both cores on runs of their
        own; one copy of the weights. Recurrent or small graphs: two single-thread instances, each free to take a
        request while the other runs (docs/benchmarks.md). ``cost``: the encoder's run cost (export/run_cost.py)."""
        auto = (1, 2, 2) if self._gemm_bound(cost) else (2, 1, 1)
        chosen = [self.encoder_instances, self.intra_op_threads, self.concurrent_runs]
        if precision == "fp32":
            chosen[:2] = [own if own is not None else both for own, both in
                          zip((self.fp32_encoder_instances, self.fp32_intra_op_threads), chosen)]
        return tuple(value if value is not None else default for value, default in zip(chosen, auto))

    def fused(self, cost: RunCost) -> bool:
        """Whether an ensemble whose encoder has this run cost runs it and the tokenizer in one text_encoder_* model."""
        if self.pipeline is not None:
            return self.pipeline == "fused"
        return self.encoder_backend == "python" and not self._gemm_bound(cost)

    def queue_policy(self, instances: int) -> str:
        """The `dynamic_batching` line bounding a model's queue, or why a single-instance model has none."""
        if instances < 2:
            return ("# no default_queue_policy: with one instance, Triton 2.51's batcher then stalls requests "
                    "for 500 ms (export/repository.py)")
        return (f"default_queue_policy {{ max_queue_size: {self.max_queue_size}, timeout_action: REJECT, "
                f"default_timeout_microseconds: {self.queue_timeout_us} }}")


def _fill(template: Path, destination: Path, values: dict) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(Template(template.read_text()).substitute(values))


def _copy_pipeline(version_dir: Path) -> None:
    shutil.copytree(PIPELINE_PACKAGE, version_dir / "ner_pipeline", ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True)


def _write_text_encoder(folder: Path, files: list[Path], values: dict) -> None:
    """A text_encoder_* model: the tokenizer's and the encoder's files side by side, configured as its encoder."""
    version_dir = folder / "1"
    version_dir.mkdir(parents=True)
    shutil.copyfile(TEMPLATES / "text_encoder" / "1" / "model.py", version_dir / "model.py")
    for path in files:
        shutil.copyfile(path, version_dir / path.name)
    _copy_pipeline(version_dir)
    _fill(TEMPLATES / "text_encoder" / "config.pbtxt", folder / "config.pbtxt", values)


def _steps(steps) -> str:
    """The ``ensemble_scheduling`` steps, each mapping its tensors to the ensemble's of the same name."""
    def maps(kind: str, mapping: dict) -> str:
        return "".join(f'\n      {kind} {{ key: "{key}", value: "{value}" }}' for key, value in mapping.items())

    return ",\n".join(f'    {{\n      model_name: "{model}"\n      model_version: -1{maps("input_map", inputs)}'
                       f'{maps("output_map", outputs)}\n    }}' for model, inputs, outputs in steps)


def write_repository(
    output: Path,
    onnx_files: dict[str, Path],
    tokenizer_json: Path,
    labels: list[str],
    scheme: str,
    crf: CrfParameters | None,
    cfg: RepositoryConfig,
) -> dict[str, str]:
    """Writes every model folder and config; returns the sha256 of each written file, by relative path."""
    output.mkdir(parents=True, exist_ok=True)
    window = cfg.window
    texts_per_request, rows_per_request = cfg.request_limits()
    common = {
        **{k: v for k, v in asdict(cfg).items() if not isinstance(v, dict)},
        "max_batch_size": texts_per_request,
        "max_text_chars": window.max_text_chars,
        "window_tokens": window.window_tokens,
        "overlap_tokens": window.overlap_tokens,
        "length_buckets": ",".join(map(str, window.length_buckets)),
        "max_rows_per_request": rows_per_request,
        "num_labels": len(labels),
        "labels": ",".join(labels),
        "entity_types": ",".join(entity_types(labels)),
        "scheme": scheme,
        "crf": "true" if crf is not None else "false",
        "response_cache": "true" if cfg.response_cache else "false",
    }

    tokenizer_dir = output / "tokenizer" / "1"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATES / "tokenizer" / "1" / "model.py", tokenizer_dir / "model.py")
    shutil.copyfile(tokenizer_json, tokenizer_dir / "tokenizer.json")
    _copy_pipeline(tokenizer_dir)
    _fill(TEMPLATES / "tokenizer" / "config.pbtxt", output / "tokenizer" / "config.pbtxt",
          {**common, "tokenizer_sha256": sha256(tokenizer_dir / "tokenizer.json"),
           "queue_policy": cfg.queue_policy(cfg.tokenizer_instances)})

    decoder_dir = output / "decoder" / "1"
    decoder_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATES / "decoder" / "1" / "model.py", decoder_dir / "model.py")
    (decoder_dir / "labels.json").write_text(json.dumps(labels, ensure_ascii=False))
    crf_file = decoder_dir / "crf.npz"
    if crf is not None:
        np.savez(crf_file, transitions=crf.transitions, start_transitions=crf.start_transitions,
                 end_transitions=crf.end_transitions)
    elif crf_file.exists():
        crf_file.unlink()
    _copy_pipeline(decoder_dir)
    decoder_hash = hashlib.sha256(
        "".join(sha256(p) for p in sorted(decoder_dir.glob("*")) if p.is_file()).encode()).hexdigest()
    _fill(TEMPLATES / "decoder" / "config.pbtxt", output / "decoder" / "config.pbtxt",
          {**common, "decoder_sha256": decoder_hash, "queue_policy": cfg.queue_policy(cfg.decoder_instances)})

    fused: dict[str, bool] = {}
    for ensemble, (encoder, precision) in ENSEMBLES.items():
        encoder_dir = output / encoder / "1"
        encoder_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_files[precision], encoder_dir / "model.onnx")
        python_model = encoder_dir / "model.py"
        if cfg.encoder_backend == "python":
            shutil.copyfile(TEMPLATES / "encoder" / "1" / "model.py", python_model)
            _copy_pipeline(encoder_dir)
        else:
            if python_model.exists():
                python_model.unlink()
            shutil.rmtree(encoder_dir / "ner_pipeline", ignore_errors=True)
            problems = native.unloadable(encoder_dir / "model.onnx")
            if problems:
                raise CheckpointError(f"{encoder}: ONNX Runtime 1.19 (Triton 24.10's native backend) cannot load "
                                      f"this graph: {'; '.join(problems)} (export/native.py)")
        values = {**common, "name": encoder, "precision": precision, "onnx_sha256": sha256(encoder_dir / "model.onnx")}
        cost = graph_run_cost(encoder_dir / "model.onnx") if cfg.run_cost == "graph" else RunCost.parse(cfg.run_cost)
        values["run_cost"] = str(cost)
        values["vocab_size"] = embedding_rows(str(encoder_dir / "model.onnx")) or ""
        values["max_width"] = max(window.length_buckets)
        instances, threads, lanes = cfg.encoder_layout(cost, precision)
        values.update(encoder_instances=instances, intra_op_threads=threads, concurrent_runs=lanes)
        values["queue_policy"] = cfg.queue_policy(values["encoder_instances"])
        _fill(TEMPLATES / "encoder" / f"config.{cfg.encoder_backend}.pbtxt", output / encoder / "config.pbtxt", values)
        text_encoder = output / f"text_encoder_{precision}"
        shutil.rmtree(text_encoder, ignore_errors=True)
        fused[ensemble] = cfg.fused(cost)
        if fused[ensemble]:
            _write_text_encoder(text_encoder, [encoder_dir / "model.onnx", tokenizer_dir / "tokenizer.json"],
                                {**values, "name": text_encoder.name,
                                 "tokenizer_sha256": sha256(tokenizer_dir / "tokenizer.json")})

    ensemble_configs = {output / ensemble / "config.pbtxt" for ensemble in ENSEMBLES}
    files = {
        str(path.relative_to(output)): sha256(path)
        for path in sorted(output.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.name != "export_report.json"
        and path not in ensemble_configs
    }
    template = Template((TEMPLATES / "ensemble" / "config.pbtxt").read_text())
    for ensemble, (encoder, precision) in ENSEMBLES.items():
        values = {**common, "name": ensemble, "encoder": encoder, "precision": precision}
        values["steps"] = Template(_steps(FUSED_STEPS if fused[ensemble] else STEPS)).substitute(values)
        # The hash leaves its own parameter out, so the config without it gives the hash the config then carries.
        unhashed = parse_config(template.substitute(values, model_hash=""))
        values[HASH_PARAMETER] = model_hash(output, unhashed, files)
        (output / ensemble / "1").mkdir(parents=True, exist_ok=True)
        destination = output / ensemble / "config.pbtxt"
        destination.write_text(template.substitute(values))
        files[str(destination.relative_to(output))] = sha256(destination)
    return dict(sorted(files.items()))


def ensemble_steps(repository: Path, ensemble: str) -> list[str]:
    """The models an ensemble of a written repository runs, in order."""
    config = parse_config((repository / ensemble / "config.pbtxt").read_text())
    return [step.model_name for step in config.ensemble_scheduling.step]


def encoder_step(repository: Path, ensemble: str) -> str:
    """The model that runs an ensemble's ONNX encoder: ``text_encoder_*`` (fused form) or ``encoder_*`` (three
    steps)."""
    return next(step for step in ensemble_steps(repository, ensemble)
                if (repository / step / "1" / "model.onnx").exists())
