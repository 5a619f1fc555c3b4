"""Checkpoint → Triton model repository: ONNX FP32 (a BERT-family encoder with ONNX Runtime's transformer fusions;
parity-checked against PyTorch), ONNX INT8 quantized from it (label agreement with FP32 reported), the tokenizer and
decoder models and both ensembles, with ``export_report.json`` beside them."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from ner_pipeline.decoding import Decoder
from ner_pipeline.windows import encode_texts, load_tokenizer

from .calibration import CalibrationConfig, calibration_rows, calibration_texts
from .checkpoint import describe, load_checkpoint, tokenizer_source
from .tokenizer_files import save_tokenizer
from .onnx_export import OnnxExportConfig, export_fp32, max_abs_difference, onnx_session
from .optimize import GraphOptimizationConfig, for_model, fuse_fp32
from .quantize import QuantizationConfig, label_agreement, quantize_int8
from .model_hash import written_hash
from .repository import ENSEMBLES, RepositoryConfig, write_repository

# Parity samples: mixed scripts, full-width forms, emoji, combining marks, and one text long enough for windows.
SAMPLE_TEXTS = [
    "张三在北京的清华大学读书。",
    "联合国秘书长访问上海，Microsoft 与微软公司的代表同行。",
    "Ｆｕｌｌ　ｗｉｄｔｈ文字、e\u0301cole、😀表情和𠀀生僻字都要对齐。",
    "2024年3月，李四从乌鲁木齐出发\t沿长江而下。\n",
    "这是一段很长的文字，" * 120,
]


class Progress:
    """One line per export step with its duration, so a long export shows where it is."""

    def __init__(self, total: int):
        self.total, self.step, self.started = total, 0, time.perf_counter()

    def __call__(self, message: str) -> None:
        self.step += 1
        print(f"[{self.step}/{self.total}] {message} (t={time.perf_counter() - self.started:.1f} s)", flush=True)


def export_checkpoint(checkpoint_dir: Path, output: Path, repo_cfg: RepositoryConfig,
                      onnx_cfg: OnnxExportConfig = OnnxExportConfig(),
                      quant_cfg: QuantizationConfig = QuantizationConfig(),
                      calibration_cfg: CalibrationConfig = CalibrationConfig(),
                      fusion_cfg: GraphOptimizationConfig = GraphOptimizationConfig()) -> dict:
    """Writes the repository and ``export_report.json`` inside it; returns the report."""
    started = time.perf_counter()
    progress = Progress(7)
    progress(f"loading checkpoint {checkpoint_dir}")
    checkpoint = load_checkpoint(checkpoint_dir)
    print(f"      {describe(checkpoint)}", flush=True)
    print(f"      {tokenizer_source(checkpoint)}", flush=True)

    with tempfile.TemporaryDirectory(prefix="ner-export-") as tmp:
        tmp = Path(tmp)
        note = save_tokenizer(checkpoint.tokenizer, tmp / "tokenizer", checkpoint.directory)
        if note:
            print(f"      {note}", flush=True)
        tokenizer_json = tmp / "tokenizer" / "tokenizer.json"
        batch = encode_texts(load_tokenizer(str(tokenizer_json)), SAMPLE_TEXTS, repo_cfg.window)
        rows = [(batch.input_ids[i : i + 1], batch.attention_mask[i : i + 1]) for i in range(batch.rows)]
        # The rows one by one and all together: other batch sizes, lengths and padding than the traced example's
        # (export_fp32), so that a trace that depends on them fails here.
        parity_rows = rows + [(batch.input_ids, batch.attention_mask)]

        progress(f"exporting ONNX FP32 (opset {onnx_cfg.opset})")
        fp32_path = unfused_path = export_fp32(checkpoint.model, tmp / "fp32.onnx", onnx_cfg)
        fusion_cfg, unfused_reason = for_model(fusion_cfg, checkpoint.model, repo_cfg.encoder_backend)
        fusion = asdict(fusion_cfg)
        if not unfused_reason:
            fusion["fused_operators"] = fuse_fp32(unfused_path, tmp / "fp32-fused.onnx", fusion_cfg)
            if fusion["fused_operators"]:
                fp32_path = tmp / "fp32-fused.onnx"
            else:
                unfused_reason = "ONNX Runtime's transformer optimizer found nothing to fuse"
        fusion = {"applied": not unfused_reason, **fusion}
        if unfused_reason:
            fusion["unfused_because"] = unfused_reason
            progress(f"keeping the FP32 graph unfused: {unfused_reason}")
        else:
            progress("fused the FP32 graph (ONNX Runtime's transformer optimizer): " + ", ".join(
                f"{count} {op}" for op, count in fusion["fused_operators"].items()))
        fp32_session = onnx_session(fp32_path)
        progress(f"checking FP32 parity with PyTorch on {len(rows)} rows, one by one and as one batch")
        parity = max_abs_difference(checkpoint.model, fp32_session, parity_rows)
        if parity > onnx_cfg.parity_tolerance:
            raise RuntimeError(f"ONNX FP32 differs from PyTorch by {parity:.2e} > {onnx_cfg.parity_tolerance:.0e}"
                               + ("" if unfused_reason else " (the fused graph; --no-fuse exports it unfused)"))
        if not unfused_reason:
            fusion["unfused_parity_max_abs_logit_diff"] = max_abs_difference(
                checkpoint.model, onnx_session(unfused_path), parity_rows)

        calibration = calibrated_on = None
        if quant_cfg.mode == "static":
            source, texts = calibration_texts(calibration_cfg)
            calibration = calibration_rows(load_tokenizer(str(tokenizer_json)), texts, repo_cfg.window,
                                           calibration_cfg.rows_per_call)
            calibrated_on = {"source": source, "texts": len(texts)}
        progress(f"quantizing to INT8 ({quant_cfg.mode}, per_channel={quant_cfg.per_channel}, reduce_range="
                 f"{quant_cfg.reduce_range})"
                 + (f", calibrated on {len(texts)} texts of {source}" if calibrated_on else ""))
        int8_path = quantize_int8(fp32_path, tmp / "int8.onnx", quant_cfg, calibration)
        # Agreement of the labels the decoder gives (CRF Viterbi, or argmax) at the scored positions.
        decoder = Decoder(checkpoint.labels, checkpoint.crf, checkpoint.scheme)
        scored = [(ids, mask, batch.word_spans[i : i + 1, :, 0] >= 0) for i, (ids, mask) in enumerate(rows)]
        agreement = label_agreement(fp32_session, onnx_session(int8_path), scored,
                                    tag=lambda emissions: decoder.tag_window(emissions)[0])

        progress(f"writing the model repository to {output} (encoder backend: {repo_cfg.encoder_backend})")
        files = write_repository(output, {"fp32": fp32_path, "int8": int8_path}, tokenizer_json,
                                 checkpoint.labels, checkpoint.scheme, checkpoint.crf, repo_cfg)
        sizes = {precision: path.stat().st_size for precision, path in (("fp32", fp32_path), ("int8", int8_path))}

    report = {
        "checkpoint": str(checkpoint_dir),
        "model_type": checkpoint.model_type,
        "layout": checkpoint.layout,
        "labels_source": checkpoint.labels_source,
        "tokenizer": checkpoint.tokenizer_options,
        "labels": checkpoint.labels,
        "scheme": checkpoint.scheme,
        "crf": checkpoint.crf is not None,
        "export_seconds": round(time.perf_counter() - started, 2),
        "onnx_bytes": sizes,
        "parity_max_abs_logit_diff": parity,
        "int8_label_agreement": agreement,
        "sample_rows": len(rows),
        "onnx": asdict(onnx_cfg),
        "fusion": fusion,
        "quantization": asdict(quant_cfg),
        "calibration": calibrated_on,
        "repository": asdict(repo_cfg),
        "model_hash": {ensemble: written_hash(output, ensemble) for ensemble in ENSEMBLES},
        "files_sha256": files,
    }
    (output / "export_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    progress(
        f"done: FP32 {sizes['fp32'] / 1e6:.1f} MB, INT8 {sizes['int8'] / 1e6:.1f} MB, parity {parity:.1e}, "
        f"INT8 agreement {agreement:.2%}"
    )
    return report
