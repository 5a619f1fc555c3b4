"""python -m export CHECKPOINT --output build/model_repository

Turns a token-classification checkpoint into a complete Triton model repository: ONNX FP32 (parity-checked
against PyTorch), ONNX INT8 (label agreement with FP32 reported), the tokenizer and decoder models, and both
ensembles. Every flag has an environment variable (shown in --help).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from ner_pipeline.runs import RUN_PLANNINGS
from ner_pipeline.windows import WindowConfig, encode_texts, load_tokenizer

from .checkpoint import CheckpointError, describe, load_checkpoint
from .onnx_export import OnnxExportConfig, export_fp32, max_abs_difference, onnx_session
from .quantize import QuantizationConfig, label_agreement, quantize_int8
from .repository import ENCODER_BACKENDS, RepositoryConfig, write_repository

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
                      quant_cfg: QuantizationConfig = QuantizationConfig()) -> dict:
    """Writes the repository and ``export_report.json`` inside it; returns the report."""
    started = time.perf_counter()
    progress = Progress(6)
    progress(f"loading checkpoint {checkpoint_dir}")
    checkpoint = load_checkpoint(checkpoint_dir)
    print(f"      {describe(checkpoint)}", flush=True)

    with tempfile.TemporaryDirectory(prefix="ner-export-") as tmp:
        tmp = Path(tmp)
        checkpoint.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        tokenizer_json = tmp / "tokenizer" / "tokenizer.json"
        batch = encode_texts(load_tokenizer(str(tokenizer_json)), SAMPLE_TEXTS, repo_cfg.window)
        rows = [(batch.input_ids[i : i + 1], batch.attention_mask[i : i + 1]) for i in range(batch.rows)]

        progress(f"exporting ONNX FP32 (opset {onnx_cfg.opset})")
        fp32_path = export_fp32(checkpoint.model, tmp / "fp32.onnx", onnx_cfg)
        fp32_session = onnx_session(fp32_path)
        progress(f"checking FP32 parity with PyTorch on {len(rows)} rows")
        parity = max_abs_difference(checkpoint.model, fp32_session, rows)
        if parity > onnx_cfg.parity_tolerance:
            raise RuntimeError(f"ONNX FP32 differs from PyTorch by {parity:.2e} > {onnx_cfg.parity_tolerance:.0e}")

        progress(f"quantizing to INT8 (per_channel={quant_cfg.per_channel}, reduce_range={quant_cfg.reduce_range})")
        int8_path = quantize_int8(fp32_path, tmp / "int8.onnx", quant_cfg)
        agreement = label_agreement(fp32_session, onnx_session(int8_path), rows)

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
        "quantization": asdict(quant_cfg),
        "repository": asdict(repo_cfg),
        "files_sha256": files,
    }
    (output / "export_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    progress(
        f"done: FP32 {sizes['fp32'] / 1e6:.1f} MB, INT8 {sizes['int8'] / 1e6:.1f} MB, parity {parity:.1e}, "
        f"INT8 agreement {agreement:.2%}"
    )
    return report


def _env(name: str, default):
    return type(default)(os.environ[name]) if name in os.environ else default


def _count_or_auto(value: str) -> int | None:
    return None if value == "auto" else int(value)


def parse_args(argv=None) -> argparse.Namespace:
    defaults = RepositoryConfig()
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, nargs="?", default=os.environ.get("NER_CHECKPOINT"),
                        help="checkpoint directory [NER_CHECKPOINT]")
    parser.add_argument("--output", type=Path, default=Path(_env("NER_MODEL_REPOSITORY", "build/model_repository")),
                        help="model repository to write [NER_MODEL_REPOSITORY]")
    parser.add_argument("--encoder-backend", choices=ENCODER_BACKENDS,
                        default=_env("NER_ENCODER_BACKEND", defaults.encoder_backend),
                        help="python: onnxruntime inside a Python-backend model (this machine's server); "
                             "onnxruntime: Triton's native backend (official container) [NER_ENCODER_BACKEND]")
    parser.add_argument("--opset", type=int, default=_env("NER_ONNX_OPSET", OnnxExportConfig.opset),
                        help="ONNX opset, at most 21 for the 24.10 container [NER_ONNX_OPSET]")
    parser.add_argument("--reduce-range", action="store_true", default=_env("NER_QUANT_REDUCE_RANGE", 0) == 1,
                        help="7-bit weights for CPUs without VNNI [NER_QUANT_REDUCE_RANGE=1]")
    parser.add_argument("--max-text-chars", type=int, default=_env("NER_MAX_TEXT_CHARS", WindowConfig.max_text_chars),
                        help="longest accepted text, in code points [NER_MAX_TEXT_CHARS]")
    parser.add_argument("--window-overlap", type=int, default=_env("NER_WINDOW_OVERLAP", WindowConfig.overlap_tokens),
                        help="tokens shared by consecutive windows of a long text [NER_WINDOW_OVERLAP]")
    parser.add_argument("--max-texts-per-request", type=int,
                        default=_env("NER_MAX_TEXTS_PER_REQUEST", defaults.max_texts_per_request),
                        help="ensemble max_batch_size [NER_MAX_TEXTS_PER_REQUEST]")
    parser.add_argument("--encoder-instances", type=int, default=_env("NER_ENCODER_INSTANCES", defaults.encoder_instances),
                        help="instances of the INT8 encoder [NER_ENCODER_INSTANCES]")
    parser.add_argument("--intra-op-threads", type=int, default=_env("NER_INTRA_OP_THREADS", defaults.intra_op_threads),
                        help="ONNX Runtime threads per INT8 encoder instance [NER_INTRA_OP_THREADS]")
    parser.add_argument("--fp32-encoder-instances", type=_count_or_auto,
                        default=os.environ.get("NER_FP32_ENCODER_INSTANCES", "auto"),
                        help="instances of the FP32 encoder; auto: 2 when its ONNX file is at most "
                             f"{defaults.fp32_two_instances_max_mb} MB, else 1 [NER_FP32_ENCODER_INSTANCES]")
    parser.add_argument("--fp32-intra-op-threads", type=_count_or_auto,
                        default=os.environ.get("NER_FP32_INTRA_OP_THREADS", "auto"),
                        help="ONNX Runtime threads per FP32 encoder instance; auto: 1 with 2 instances, else 2 "
                             "[NER_FP32_INTRA_OP_THREADS]")
    parser.add_argument("--max-queue-delay-us", type=int,
                        default=_env("NER_MAX_QUEUE_DELAY_US", defaults.max_queue_delay_us),
                        help="dynamic batching delay, at most 2000 [NER_MAX_QUEUE_DELAY_US]")
    parser.add_argument("--run-planning", choices=RUN_PLANNINGS,
                        default=_env("NER_RUN_PLANNING", defaults.run_planning),
                        help="how the Python-backend encoder groups rows of different lengths: cost (the cheapest "
                             "plan under a cost model of one call) or ratio (padding at most a fixed share) "
                             "[NER_RUN_PLANNING]")
    parser.add_argument("--run-cost", default=_env("NER_RUN_COST", defaults.run_cost),
                        help="the cost model: auto (measured by the encoder at load) or "
                             "'per_run,per_position,per_token' in ms [NER_RUN_COST]")
    parser.add_argument("--no-response-cache", action="store_true", default=_env("NER_NO_RESPONSE_CACHE", 0) == 1,
                        help="leave Triton's response cache off for the ensembles [NER_NO_RESPONSE_CACHE=1]")
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        parser.error("a checkpoint directory is required (argument or NER_CHECKPOINT)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    window = replace(WindowConfig(), max_text_chars=args.max_text_chars, overlap_tokens=args.window_overlap)
    try:
        repo_cfg = RepositoryConfig(
            encoder_backend=args.encoder_backend,
            max_texts_per_request=args.max_texts_per_request,
            window=window,
            encoder_instances=args.encoder_instances,
            intra_op_threads=args.intra_op_threads,
            fp32_encoder_instances=args.fp32_encoder_instances,
            fp32_intra_op_threads=args.fp32_intra_op_threads,
            max_queue_delay_us=args.max_queue_delay_us,
            run_planning=args.run_planning,
            run_cost=args.run_cost,
            response_cache=not args.no_response_cache,
        )
    except ValueError as err:  # a setting out of range, e.g. a malformed --run-cost
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        export_checkpoint(args.checkpoint, args.output, repo_cfg, OnnxExportConfig(opset=args.opset),
                          QuantizationConfig(reduce_range=args.reduce_range))
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
