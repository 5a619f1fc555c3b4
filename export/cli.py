"""python -m export CHECKPOINT --output build/model_repository

Turns a token-classification checkpoint into a complete Triton model repository: ONNX FP32 (parity-checked
against PyTorch), ONNX INT8 (label agreement with FP32 reported), the tokenizer and decoder models, and both
ensembles.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ner_client.settings import (Setting, SettingGroup, boolean, count_or_auto, non_negative_int, positive_int)
from ner_model.data import DATA_DIR
from ner_pipeline.runs import RUN_PLANNINGS
from ner_pipeline.windows import WindowConfig

from .errors import CheckpointError
from .onnx_export import OnnxExportConfig
from .optimize import GraphOptimizationConfig
from .calibration import CalibrationConfig
from .quantize import QUANTIZATION_MODES, QuantizationConfig
from .repository import ENCODER_BACKENDS, PIPELINE_FORMS, REPO_ROOT, RepositoryConfig

R = RepositoryConfig

SETTINGS = SettingGroup("NER_EXPORT_", (
    Setting("checkpoint", None, "checkpoint directory", type=Path, env="NER_CHECKPOINT", positional=True,
            required=True),
    Setting("output", REPO_ROOT / "build" / "model_repository", "model repository to write", type=Path,
            env="NER_MODEL_REPOSITORY", shown="build/model_repository"),
    Setting("encoder_backend", R.encoder_backend, "python: onnxruntime inside a Python-backend model (this machine's "
            "server); onnxruntime: Triton's native backend (the official container)", choices=ENCODER_BACKENDS),
    Setting("opset", OnnxExportConfig.opset, "ONNX opset, at most 21 for the 24.10 container", type=positive_int),
    Setting("fuse", GraphOptimizationConfig.enabled, "ONNX Runtime's transformer fusions (attention, skip-LayerNorm, "
            "bias-GELU) in a BERT-family encoder's graph before quantization; other models and the onnxruntime "
            "backend keep the unfused graph", type=boolean),
    Setting("quantization", QuantizationConfig.mode, "INT8 activation scales: static (calibrated at export on "
            "training text; a text's scores do not depend on its batch) or dynamic (computed per call over the whole "
            "batch)", choices=QUANTIZATION_MODES),
    Setting("calibration_file", None, "text to calibrate static INT8 on, one text per line or a char<TAB>tag BIO "
            "file; default: MSRA train before its dev split, in the data folder", type=Path),
    Setting("calibration_texts", CalibrationConfig.texts, "texts to calibrate on, spread evenly over the file",
            type=positive_int),
    DATA_DIR,
    Setting("reduce_range", QuantizationConfig.reduce_range, "7-bit INT8 weights, for CPUs without VNNI",
            type=boolean),
    Setting("max_text_chars", WindowConfig.max_text_chars, "longest accepted text, in code points",
            type=positive_int),
    Setting("window_overlap", WindowConfig.overlap_tokens, "tokens shared by consecutive windows of a long text",
            type=non_negative_int),
    Setting("max_texts_per_request", R.max_texts_per_request, "the ensembles' max_batch_size", type=positive_int),
    Setting("pipeline", "auto", "how each ensemble runs: steps (tokenizer, encoder and decoder models) or fused "
            "(one text_encoder_* model running tokenizer and encoder in one process, then the decoder: a hop fewer); "
            "auto: fused unless the encoder is GEMM-bound (BERT-family) or on the onnxruntime backend",
            choices=("auto", *PIPELINE_FORMS)),
    Setting("encoder_instances", R.encoder_instances, "instances of each encoder; auto: 1 for a GEMM-bound graph "
            "(BERT-family), else 2", type=count_or_auto, shown="auto"),
    Setting("intra_op_threads", R.intra_op_threads, "ONNX Runtime threads per encoder session; auto: 2 for a "
            "GEMM-bound graph, else 1", type=count_or_auto, shown="auto"),
    Setting("concurrent_runs", R.concurrent_runs, "runs one encoder execution sends to its session side by side; "
            "auto: 2 for a GEMM-bound graph, else 1", type=count_or_auto, shown="auto"),
    Setting("fp32_encoder_instances", R.fp32_encoder_instances, "instances of the FP32 encoder; auto: as "
            "--encoder-instances", type=count_or_auto, shown="auto"),
    Setting("fp32_intra_op_threads", R.fp32_intra_op_threads, "ONNX Runtime threads per FP32 encoder session; "
            "auto: as --intra-op-threads", type=count_or_auto, shown="auto"),
    Setting("max_queue_delay_us", R.max_queue_delay_us, "dynamic batching delay, at most 2000",
            type=non_negative_int),
    Setting("max_tokens_per_run", R.max_tokens_per_run, "padded tokens of one encoder call at most (the Python "
            "encoder's runs; the native backend's rows per call are this // 512)", type=positive_int),
    Setting("run_planning", R.run_planning, "how the Python-backend encoder groups rows of different lengths: cost "
            "(the cheapest plan under a cost model of one call) or ratio (padding at most a fixed share)",
            choices=RUN_PLANNINGS),
    Setting("run_cost", R.run_cost, "the cost model: graph (derived from the encoder's ONNX graph at export) or "
            "'per_run,per_position,per_token' in ms"),
    Setting("response_cache", R.response_cache, "Triton's response cache for the ensembles", type=boolean),
), title="python -m export")


def configs(args) -> tuple[RepositoryConfig, OnnxExportConfig, QuantizationConfig, CalibrationConfig,
                           GraphOptimizationConfig]:
    """The export's configuration objects from its settings; ValueError when a value is out of range."""
    window = replace(WindowConfig(), max_text_chars=args.max_text_chars, overlap_tokens=args.window_overlap)
    repo_cfg = RepositoryConfig(
        encoder_backend=args.encoder_backend, pipeline=None if args.pipeline == "auto" else args.pipeline,
        max_texts_per_request=args.max_texts_per_request, window=window,
        encoder_instances=args.encoder_instances, intra_op_threads=args.intra_op_threads,
        concurrent_runs=args.concurrent_runs,
        fp32_encoder_instances=args.fp32_encoder_instances, fp32_intra_op_threads=args.fp32_intra_op_threads,
        max_queue_delay_us=args.max_queue_delay_us, max_tokens_per_run=args.max_tokens_per_run,
        run_planning=args.run_planning, run_cost=args.run_cost,
        response_cache=args.response_cache)
    quant_cfg = QuantizationConfig(mode=args.quantization, reduce_range=args.reduce_range)
    calibration_cfg = CalibrationConfig(file=args.calibration_file, data_dir=args.data_dir,
                                        texts=args.calibration_texts)
    return (repo_cfg, OnnxExportConfig(opset=args.opset), quant_cfg, calibration_cfg,
            GraphOptimizationConfig(enabled=args.fuse))


def main(argv=None) -> int:
    args = SETTINGS.parse(argv, prog="python -m export", description=__doc__)
    try:
        cfgs = configs(args)
    except ValueError as err:  # a setting out of range, e.g. a malformed --run-cost
        print(f"error: {err}", file=sys.stderr)
        return 2
    from .pipeline import export_checkpoint

    try:
        export_checkpoint(args.checkpoint, args.output, *cfgs)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
