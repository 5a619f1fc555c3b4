"""The suite's two model sizes, built once and cached under ``build/perf/``.

- ``default``: the shipped default model (``models/default``, LAC BiGRU + CRF) when it exists; until then the tiny
  generated model of ``export.synthetic`` stands in for it.
- ``bert-base``: a random-weight ``BertForTokenClassification`` of BERT-base size (12 layers × 768, 7 BIO labels,
  a CRF file), standing for RaNER: speed does not depend on the weights' values.

Both are exported by the project's own exporter (``export.pipeline.export_checkpoint``) into model repositories whose
cache key covers the checkpoint, the exporter's code, the templates and the repository settings, so a rerun skips
every export that did not change.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ner_model.data import REPO_ROOT, vocab_file
from export.quantize import QuantizationConfig
from export.repository import RepositoryConfig
from ner_pipeline.windows import WindowConfig

BUILD = REPO_ROOT / "build" / "perf"
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"
BIO_LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


@dataclass(frozen=True)
class ModelSpec:
    key: str  # "default" or "bert-base"
    checkpoint: Path
    description: str
    model_type: str


def _digest_files(paths: list[Path], content: bool = True) -> str:
    digest = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in files:
            digest.update(str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path).encode())
            if content and path.stat().st_size < 8 << 20:
                digest.update(path.read_bytes())
            else:  # large weight files: size and modification time stand for the content
                stat = path.stat()
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def default_model(directory: Path | None = None, log=print) -> ModelSpec:
    """The checkpoint in ``directory`` if given, else ``models/default`` when a trained model is there; the tiny
    generated model otherwise."""
    chosen = directory or DEFAULT_MODEL_DIR
    if (chosen / "config.json").exists():
        model_type = json.loads((chosen / "config.json").read_text()).get("model_type", "?")
        name = "models/default" if chosen.resolve() == DEFAULT_MODEL_DIR.resolve() else str(chosen)
        return ModelSpec("default", chosen, f"{name} ({model_type})", model_type)
    if directory is not None:
        raise FileNotFoundError(f"{directory} has no config.json")
    tiny = tiny_model(log)
    return replace(tiny, description=f"{tiny.description}; models/default not present")


def tiny_model(log=print) -> ModelSpec:
    from export.synthetic import build

    recipe = (REPO_ROOT / "export" / "synthetic.py").read_bytes()
    path = BUILD / "checkpoints" / f"tiny-bio-crf-{hashlib.sha256(recipe).hexdigest()[:12]}"
    if not (path / "config.json").exists():
        log(f"building the tiny stand-in model into {path}")
        partial = path.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        build(partial, scheme="BIO", crf=True, verbose=False)
        partial.rename(path)
    return ModelSpec("default", path, "tiny generated BERT (2 layers × 64)", "bert")


def bert_base_model(log=print) -> ModelSpec:
    """Random-weight BERT-base token classifier with a constraint CRF, written once. Its ``O`` bias is raised until
    it tags as many entities per sentence as MSRA train holds (``entity_rate_bias``): left at zero, the random head tags
    17 entities per sentence against train's 1.67, and the decoder and client would work on ten times the entities a
    trained model sends."""
    path = BUILD / "checkpoints" / "bert-base-random-bio-crf-msra-rate"
    if not (path / "config.json").exists():
        log(f"writing the random-weight BERT-base stand-in into {path}")
        import torch
        from safetensors.torch import save_file
        from transformers import BertConfig, BertForTokenClassification

        from export.synthetic import constraint_crf
        from ner_model.data import write_tokenizer_files

        partial = path.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        torch.manual_seed(0)
        config = BertConfig(vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                            intermediate_size=3072, max_position_embeddings=512,
                            id2label=dict(enumerate(BIO_LABELS)), label2id={l: i for i, l in enumerate(BIO_LABELS)})
        model = BertForTokenClassification(config).eval()
        write_tokenizer_files(partial, vocab_file())
        crf = constraint_crf(BIO_LABELS, "BIO")
        shift, rate, target = entity_rate_bias(model, partial, crf)
        with torch.no_grad():
            model.classifier.bias[BIO_LABELS.index("O")] += shift
        log(f"stand-in head: O bias +{shift:.3f} → {rate:.2f} entities per sentence (MSRA train: {target:.2f})")
        model.save_pretrained(partial)
        save_file({k: torch.from_numpy(v) for k, v in crf.items()}, str(partial / "crf.safetensors"))
        partial.rename(path)
    return ModelSpec("bert-base", path, "random-weight BERT-base (12 layers × 768, 7 BIO labels, CRF; O bias set to "
                     "MSRA's entity rate), RaNER's size", "bert")


def entity_rate_bias(model, tokenizer_dir: Path, crf: dict, sentences: int = 200) -> tuple[float, float, float]:
    """The shift of the ``O`` logit at which ``model`` (CRF-decoded), over ``sentences`` sentences spread evenly
    through MSRA train (never test), tags as many entities per sentence as train's gold annotation holds; returns
    (shift, entities per sentence on the sample, train's rate)."""
    import numpy as np
    import torch

    from export.layouts import crf_from
    from ner_pipeline.crf import viterbi
    from export.checkpoint import load_tokenizer
    from ner_model.data import msra_file, read_bio

    train = read_bio(msra_file("train"))
    target = sum(tag.startswith("B-") for _, tags in train for tag in tags) / len(train)
    sample = train[:: max(1, len(train) // sentences)][:sentences]
    tokenizer = load_tokenizer(tokenizer_dir)
    emissions = []
    with torch.no_grad():
        for chars, _ in sample:
            encoded = tokenizer("".join(chars), return_tensors="pt", truncation=True, max_length=128)
            emissions.append(model(**encoded).logits[0, 1:-1].double().numpy())
    parameters = crf_from({k: torch.from_numpy(v) for k, v in crf.items()}, "stand-in CRF", len(BIO_LABELS))
    begins = [i for i, label in enumerate(BIO_LABELS) if label.startswith("B-")]
    o_index = BIO_LABELS.index("O")

    def rate(shift: float) -> float:
        total = 0
        for e in emissions:
            shifted = e.copy()
            shifted[:, o_index] += shift
            total += int(np.isin(viterbi(shifted, parameters), begins).sum())
        return total / len(emissions)

    low, high = 0.0, 8.0  # the entity count falls as the O logit rises
    for _ in range(20):
        middle = (low + high) / 2
        low, high = (middle, high) if rate(middle) > target else (low, middle)
    return high, rate(high), target


def bench_repository_config(**overrides) -> RepositoryConfig:
    """The repository the suite serves: the shipped defaults, with Triton's response cache off, because benchmark
    inputs repeat (perf_analyzer cycles through its data) and a cache hit is not inference."""
    return replace(RepositoryConfig(), response_cache=False, **overrides)


# The export (ONNX FP32, INT8, parity) depends on these; the layout of the served repository is redone every run
# from the current templates and settings (seconds), so tuning the configs never re-exports a model.
_EXPORT_CODE = sorted(p for p in (REPO_ROOT / "export").glob("*.py") if p.name != "repository.py") + [
    REPO_ROOT / "ner_model", REPO_ROOT / "ner_pipeline"]


def exported(spec: ModelSpec, log=print) -> Path:
    """The checkpoint exported once by the project's exporter (``export_checkpoint``); returns the repository."""
    from export.pipeline import export_checkpoint

    key = hashlib.sha256((_digest_files([spec.checkpoint]) + _digest_files(_EXPORT_CODE)).encode()).hexdigest()[:12]
    output = BUILD / "exports" / f"{spec.checkpoint.name}-{key}"
    if (output / "export_report.json").exists():
        return output
    log(f"exporting {spec.checkpoint} into {output} with the project's exporter")
    partial = output.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    export_checkpoint(spec.checkpoint, partial, RepositoryConfig())
    partial.rename(output)
    for stale in (BUILD / "exports").glob(f"{spec.checkpoint.name}-*"):  # older exports of the same checkpoint
        if stale != output and stale.is_dir() and len(stale.name) == len(output.name):
            shutil.rmtree(stale, ignore_errors=True)
    return output


# INT8 builds measured beside the served one (static, calibrated at export): the dynamic quantization the project
# served before, and static with 7-bit weights for CPUs without VNNI.
INT8_VARIANTS = {
    "dynamic": QuantizationConfig(mode="dynamic"),
    "reduce_range": QuantizationConfig(mode="static", reduce_range=True),
}


def export_window(export_dir: Path) -> WindowConfig:
    """The window configuration the export was made with (its ``export_report.json``)."""
    saved = json.loads((export_dir / "export_report.json").read_text())["repository"]["window"]
    return WindowConfig(**{**saved, "length_buckets": tuple(saved["length_buckets"])})


def int8_variant_onnx(export_dir: Path, name: str, log=print) -> Path:
    """``INT8_VARIANTS[name]`` quantized from the export's FP32 file by the exporter's own quantizer; a static one is
    calibrated as the export calibrates (the same training texts, the export's tokenizer file and window
    configuration). Cached in the export's folder under a name that covers the configuration."""
    from export.calibration import CalibrationConfig, calibration_rows, calibration_texts
    from export.quantize import quantize_int8
    from ner_pipeline.windows import load_tokenizer

    cfg = INT8_VARIANTS[name]
    key = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:8]
    out = export_dir / f"perf-int8-{name.replace('_', '-')}-{key}.onnx"
    if not out.exists():
        log(f"quantizing {export_dir.name} to INT8 {name} ({cfg})")
        calibration = None
        if cfg.mode == "static":
            calibration_cfg = CalibrationConfig()
            _, texts = calibration_texts(calibration_cfg)
            tokenizer = load_tokenizer(str(export_dir / "tokenizer" / "1" / "tokenizer.json"))
            calibration = calibration_rows(tokenizer, texts, export_window(export_dir), calibration_cfg.rows_per_call)
        partial = out.with_suffix(".partial.onnx")
        quantize_int8(export_dir / "encoder_fp32" / "1" / "model.onnx", partial, cfg, calibration)
        partial.rename(out)
    return out


def serving_repository(export_dir: Path, out: Path, repo_cfg: RepositoryConfig, int8_onnx: Path | None = None,
                       keep: tuple[str, ...] = ("ner", "ner_fp32")) -> Path:
    """Lays the exported model out again (``export.repository.write_repository``) with ``repo_cfg`` and the current
    templates, holding only the ensembles in ``keep`` and their models; optionally with another INT8 file."""
    from export.repository import ENSEMBLES, write_repository
    from ner_pipeline.crf import CrfParameters
    from ner_pipeline.tagging import detect_scheme

    labels = repository_labels(export_dir)
    crf_path = export_dir / "decoder" / "1" / "crf.npz"
    crf = CrfParameters.from_npz(str(crf_path)) if crf_path.exists() else None
    shutil.rmtree(out, ignore_errors=True)
    int8 = int8_onnx or export_dir / "encoder_int8" / "1" / "model.onnx"
    fp32 = export_dir / "encoder_fp32" / "1" / "model.onnx" if "ner_fp32" in keep else int8  # no 400 MB copy for nothing
    write_repository(out, {"fp32": fp32, "int8": int8}, export_dir / "tokenizer" / "1" / "tokenizer.json", labels,
                     detect_scheme(labels), crf, repo_cfg)
    for ensemble, (encoder, precision) in ENSEMBLES.items():
        if ensemble not in keep:
            for model in (ensemble, encoder, f"text_encoder_{precision}"):
                shutil.rmtree(out / model, ignore_errors=True)
    return out


def repository_labels(repository: Path) -> list[str]:
    return json.loads((repository / "decoder" / "1" / "labels.json").read_text())
