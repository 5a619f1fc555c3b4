"""Every generated config.pbtxt parses as Triton's ModelConfig, and the encoder's matches its ONNX graph.

The RepositoryConfig checks are unit tests; the others read the session's served repository (the server lane)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.native import unloadable
from export.repository import REPO_ROOT, RepositoryConfig, write_repository
from export.run_cost import graph_run_cost
from ner_pipeline.runs import RunCost

ONNX_TO_TRITON = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT: "TYPE_FP32"}
MODELS = ["ner", "ner_fp32", "tokenizer", "encoder_int8", "encoder_fp32", "decoder"]


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def rewrite_repository(served, out: Path, encoder_backend: str) -> Path:
    """The served repository, rewritten in another encoder form from the same ONNX files."""
    source = served.repository
    write_repository(
        out,
        {"fp32": source / "encoder_fp32" / "1" / "model.onnx", "int8": source / "encoder_int8" / "1" / "model.onnx"},
        source / "tokenizer" / "1" / "tokenizer.json",
        served.checkpoint.labels,
        served.checkpoint.scheme,
        served.checkpoint.crf,
        RepositoryConfig(encoder_backend=encoder_backend),
    )
    return out


def native_export(served, out: Path) -> Path:
    """The served checkpoint exported for Triton's native ONNX Runtime backend, which gets the unfused graph."""
    from export.pipeline import export_checkpoint

    export_checkpoint(served.checkpoint.directory, out, RepositoryConfig(encoder_backend="onnxruntime"))
    return out


@pytest.fixture(scope="module", params=["python", "onnxruntime"])
def repository(request, served, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"form-{request.param}")
    if request.param == "onnxruntime":
        return request.param, native_export(served, out)
    return request.param, rewrite_repository(served, out, request.param)


@pytest.mark.server
def test_every_config_parses(repository):
    form, root = repository
    for name in MODELS + (["text_encoder_int8", "text_encoder_fp32"] if form == "python" else []):
        config = parse_config(root / name / "config.pbtxt")
        assert config.name == name
        assert (root / name / "1").is_dir()
    assert parse_config(root / "encoder_int8" / "config.pbtxt").backend == form
    assert not (root / "text_encoder_int8").exists() or form == "python"


@pytest.mark.server
def test_encoder_config_matches_onnx_graph(repository):
    _, root = repository
    for encoder in ("encoder_int8", "encoder_fp32"):
        config = parse_config(root / encoder / "config.pbtxt")
        graph = onnx.load(str(root / encoder / "1" / "model.onnx")).graph
        assert config.max_batch_size > 0
        declared = {t.name: t for t in list(config.input) + list(config.output)}
        for value in list(graph.input) + list(graph.output):
            tensor = declared.pop(value.name)
            assert model_config_pb2.DataType.Name(tensor.data_type) == ONNX_TO_TRITON[value.type.tensor_type.elem_type]
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
            assert shape[0] == -1  # the batch axis, which Triton's max_batch_size stands for
            assert list(tensor.dims) == shape[1:]
        assert not declared, f"config declares tensors the graph lacks: {sorted(declared)}"


@pytest.mark.server
def test_onnx_is_self_contained_and_the_native_form_loadable_by_the_native_backend(served, repository):
    """One model.onnx per encoder. The native form's can be loaded by Triton 24.10's ONNX Runtime 1.19 (opset, IR,
    operators: export/native.py); the Python backend's BERT graph holds ONNX Runtime's fused contrib operators,
    which the native check refuses."""
    form, root = repository
    for encoder in ("encoder_int8", "encoder_fp32"):
        path = root / encoder / "1" / "model.onnx"
        model = onnx.load(str(path), load_external_data=False)
        assert all(init.data_location != onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
        if form == "onnxruntime":
            assert unloadable(path) == []
        else:
            assert any("com.microsoft" in problem for problem in unloadable(path)), unloadable(path)


@pytest.mark.slow
def test_default_model_exports_for_the_native_backend(tmp_path):
    """The shipped model's encoders (BiGRU, lexicon, self-attention; FP32 and INT8) pass the native export's check."""
    from export.pipeline import export_checkpoint

    export_checkpoint(REPO_ROOT / "models" / "default", tmp_path, RepositoryConfig(encoder_backend="onnxruntime"))
    for encoder in ("encoder_int8", "encoder_fp32"):
        assert parse_config(tmp_path / encoder / "config.pbtxt").backend == "onnxruntime"
        assert unloadable(tmp_path / encoder / "1" / "model.onnx") == []


@pytest.mark.server
def test_ensembles_wire_the_pipeline_and_publish_limits(served, repository):
    """The tiny model's encoders are small: on the Python backend each ensemble is a text_encoder_* model (tokenizer
    and encoder in one process, with its encoder's layout and run cost and the files of both) and the decoder; the
    native backend keeps three steps."""
    form, root = repository
    for name, encoder, precision in (("ner", "encoder_int8", "int8"), ("ner_fp32", "encoder_fp32", "fp32")):
        config = parse_config(root / name / "config.pbtxt")
        steps = [step.model_name for step in config.ensemble_scheduling.step]
        if form == "python":
            assert steps == [f"text_encoder_{precision}", "decoder"]
            fused, separate = root / f"text_encoder_{precision}", parse_config(root / encoder / "config.pbtxt")
            pipeline = parse_config(fused / "config.pbtxt")
            assert [group.count for group in pipeline.instance_group] == [g.count for g in separate.instance_group]
            for key in ("intra_op_thread_count", "concurrent_runs", "run_cost", "max_tokens_per_run"):
                assert pipeline.parameters[key] == separate.parameters[key], key
            for step, file in ((encoder, "model.onnx"), ("tokenizer", "tokenizer.json")):
                assert (fused / "1" / file).read_bytes() == (root / step / "1" / file).read_bytes(), file
        else:
            assert steps == ["tokenizer", encoder, "decoder"]
        assert config.response_cache.enable
        params = {k: v.string_value for k, v in config.parameters.items()}
        assert params["precision"] == precision
        assert params["max_text_chars"] == "100000" and params["window_tokens"] == "510"
        assert params["labels"].split(",") == served.checkpoint.labels


@pytest.mark.server
def test_export_report(served):
    report = served.report
    assert report["parity_max_abs_logit_diff"] <= 1e-4
    assert report["int8_label_agreement"] >= 0.95
    assert report["crf"] is True and report["scheme"] == "BIO"
    for relative, digest in report["files_sha256"].items():
        assert len(digest) == 64 and (served.repository / relative).exists()
    encoder = parse_config(served.repository / "encoder_int8" / "config.pbtxt")
    assert encoder.parameters["onnx_sha256"].string_value == report["files_sha256"]["encoder_int8/1/model.onnx"]


@pytest.mark.server
def test_encoder_layout_follows_the_graph_or_the_settings(repository):
    """Each encoder's instances x threads x concurrent runs: from its graph's run cost by default (a GEMM-bound graph,
    BERT-base's, gets one instance of 2 threads sending 2 runs side by side; a recurrent or small one, two
    single-thread instances), or as set, FP32 following the INT8 settings unless given its own."""
    form, root = repository
    bert_base, recurrent = RunCost(4.6, 0.0, 0.28), RunCost(0.27, 0.0104, 0.0165)  # export.run_cost of both kinds
    defaults = RepositoryConfig()
    assert defaults.encoder_layout(bert_base, "int8") == defaults.encoder_layout(bert_base, "fp32") == (1, 2, 2)
    assert defaults.encoder_layout(recurrent, "int8") == (2, 1, 1)
    assert RepositoryConfig(encoder_instances=3).encoder_layout(bert_base, "fp32") == (3, 2, 2)
    tuned = RepositoryConfig(intra_op_threads=1, fp32_intra_op_threads=4)
    assert tuned.encoder_layout(bert_base, "int8") == (1, 1, 2) and tuned.encoder_layout(bert_base, "fp32") == (1, 4, 2)
    for encoder, precision in (("encoder_int8", "int8"), ("encoder_fp32", "fp32")):
        config = parse_config(root / encoder / "config.pbtxt")
        cost = graph_run_cost(root / encoder / "1" / "model.onnx")
        instances, threads, lanes = defaults.encoder_layout(cost, precision)
        assert (instances, threads, lanes) == (2, 1, 1)  # the tiny test model is small
        assert [group.count for group in config.instance_group] == [instances]
        assert config.parameters["intra_op_thread_count"].string_value == str(threads)
        if form == "python":  # the native backend runs one call per execution
            assert config.parameters["concurrent_runs"].string_value == str(lanes)


@pytest.mark.unit
def test_serving_form_follows_the_graph_or_the_settings():
    """Fused (tokenizer and encoder in one text_encoder_* model) where the encoder gets single-thread instances; three
    steps for a GEMM-bound encoder, whose runs tokenising then overlaps, and on the native backend; or as set."""
    bert_base, recurrent = RunCost(4.6, 0.0, 0.28), RunCost(0.27, 0.0104, 0.0165)
    assert RepositoryConfig().fused(recurrent) and not RepositoryConfig().fused(bert_base)
    assert not RepositoryConfig(encoder_backend="onnxruntime").fused(recurrent)
    assert RepositoryConfig(pipeline="fused").fused(bert_base)
    assert not RepositoryConfig(pipeline="steps").fused(recurrent)
    with pytest.raises(ValueError, match="fused pipeline"):
        RepositoryConfig(pipeline="fused", encoder_backend="onnxruntime")
    with pytest.raises(ValueError, match="pipeline must be"):
        RepositoryConfig(pipeline="one")


@pytest.mark.server
def test_single_instance_models_have_no_queue_policy(served, tmp_path):
    """A queue bound on every model with two or more instances; none on a single-instance one, where Triton 2.51's
    batcher would stall requests for 500 ms (RepositoryConfig.queue_policy)."""
    cfg = RepositoryConfig(fp32_encoder_instances=1, tokenizer_instances=1, max_queue_size=7)
    source = served.repository
    write_repository(tmp_path, {"fp32": source / "encoder_fp32" / "1" / "model.onnx",
                                "int8": source / "encoder_int8" / "1" / "model.onnx"},
                     source / "tokenizer" / "1" / "tokenizer.json", served.checkpoint.labels,
                     served.checkpoint.scheme, served.checkpoint.crf, cfg)
    bounded = {}
    for model in ("tokenizer", "encoder_int8", "encoder_fp32", "decoder"):
        config = parse_config(tmp_path / model / "config.pbtxt")
        assert config.HasField("dynamic_batching")
        policy = config.dynamic_batching.default_queue_policy
        bounded[model] = (config.dynamic_batching.HasField("default_queue_policy"), policy.max_queue_size)
    assert bounded == {"tokenizer": (False, 0), "encoder_int8": (True, 7), "encoder_fp32": (False, 0),
                       "decoder": (True, 7)}


@pytest.mark.unit
def test_repository_config_rejects_zero_instances():
    with pytest.raises(ValueError, match="at least 1"):
        RepositoryConfig(fp32_encoder_instances=0)


@pytest.mark.unit
def test_repository_config_rejects_unknown_run_planning():
    with pytest.raises(ValueError, match="run_planning"):
        RepositoryConfig(run_planning="greedy")
    with pytest.raises(ValueError, match="run cost"):
        RepositoryConfig(run_cost="4.6,0.28")


@pytest.mark.server
def test_python_encoders_plan_runs_by_a_cost_model_derived_from_their_graph(served):
    """The shipped encoders cut runs by cost (ner_pipeline.runs.plan_runs_by_cost) under the model the export derives
    from each encoder's own ONNX file (export.run_cost): nothing is timed at load."""
    from export.run_cost import graph_run_cost

    for encoder in ("encoder_int8", "encoder_fp32"):
        params = parse_config(served.repository / encoder / "config.pbtxt").parameters
        assert params["run_planning"].string_value == "cost"
        cost = RunCost.parse(params["run_cost"].string_value)
        assert str(cost) == str(graph_run_cost(served.repository / encoder / "1" / "model.onnx"))
        # A second row of the same length costs less than a second call: without that the cost planner never puts two
        # rows in one run, and the encoder would run every row alone.
        assert cost.of(2, 16) < 2 * cost.of(1, 16), cost
