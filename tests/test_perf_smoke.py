"""The benchmark suite runs end to end in its smoke form (the tiny model standing in for BERT-base, a few requests, real
tritonserver, perf_analyzer, locust), and writes every output: results JSON, a Markdown report with every section,
the PNG plots. So the suite cannot rot; its figures mean nothing here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from perf import gemm_ceiling
from perf.cli import SIZES, main
from perf.report import SECTIONS
from perf.servers import encoder_model, encoder_stats

pytestmark = [pytest.mark.server, pytest.mark.slow]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf") / "results"
    assert main(["--smoke", "--output", str(out)]) == 0
    yield out
    shutil.rmtree(out, ignore_errors=True)


def test_results_json_has_every_part(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    assert results["run"]["smoke"] is True
    assert "avx512_vnni" in results["machine"]["cpu"]["flags"]
    assert results["machine"]["cpu"]["logical_cores"] >= 1
    assert results["versions"]["onnxruntime"] and results["versions"]["tritonclient"]
    assert set(results["sizes"]) == set(SIZES)
    for size, r in results["sizes"].items():
        assert {"naive", "ort_fp32", "ort_int8", "ort_int8_dynamic", "ort_int8_reduce_range"} <= set(r["baselines"])
        # The served (static) INT8 build answers a row alike alone and among others; the dynamic one does not.
        assert set(r["int8_label_agreement"]) == {"int8", "int8_dynamic", "int8_reduce_range"}, size
        changes = r["batch_dependence"]["max_abs_logit_change"]
        assert max(changes["fp32"], changes["int8"], changes["int8_reduce_range"]) <= 1e-4 < changes["int8_dynamic"]
        for model in ("ner", "ner_fp32"):
            points = r["triton_sdk"][model]
            assert [p["concurrency"] for p in points] == results["settings"]["sdk_concurrency"]
            assert all(p["requests"] > 0 and p["errors"] == 0 for p in points), points
            assert encoder_stats(points[0]["server_stats"], "int8") or model == "ner_fp32"
        assert all(p["errors"] == 0 for p in r["triton_sdk_http"]["ner"])
        # The c=1 tail on one text repeated: both sides timed over every request.
        tail = r["one_text_tail"]
        assert tail["requests"] == results["settings"]["one_text_rounds"] * results["settings"]["one_text_requests"]
        assert all(0 < tail[side]["p50_ms"] <= tail[side]["p99_ms"] <= tail[side]["max_ms"]
                   for side in ("session", "triton")), tail
        assert r["memory"]["peak_under_load"]["total_bytes"] > 0
        processes = r["memory"]["peak_under_load"]["processes"]
        assert any(name.startswith(("encoder_int8", "text_encoder_int8")) for name in processes)
        assert r["locust"]["TritonHttpUser"].get("requests", 0) > 0, r["locust"]["TritonHttpUser"]
        ws = r["locust"]["WebSocketUser"]
        assert ws.get("requests", 0) > 0 and ws["failures"] == 0, ws
        assert r["tuning"] and all(t["errors"] == 0 and t["c8_throughput_per_s"] > 0 for t in r["tuning"])
        # scripts/setup.sh test installs perf_analyzer: it must run here.
        assert r["perf_analyzer"]["available"], r["perf_analyzer"]["note"]
        runs = r["perf_analyzer"]["runs"]
        assert {(p["model"], p["protocol"]) for p in runs} == {
            (m, proto) for m in results["settings"]["pa_models"] for proto in results["settings"]["pa_protocols"]}
        assert all(p.get("throughput_per_s") for p in runs), runs
    assert set(results["sizes"]["default"]["accuracy"]["scores"]) == {"fp32", "int8", "int8_dynamic",
                                                                       "int8_reduce_range"}
    # The dynamic and reduce_range builds served through Triton in place of the static one.
    served = {t["int8"] for t in results["sizes"]["bert-base"]["tuning"]}
    assert {"dynamic", "reduce_range"} <= served, served
    assert {t["size"] for t in results["targets"]} == set(SIZES)
    assert all(t["met"] in (True, False) for t in results["targets"])
    assert all(t["note"].startswith("missed") for t in results["targets"] if not t["met"])  # and by how much


def test_report_has_every_section_and_the_targets_table(smoke_run):
    report = (smoke_run / "report.md").read_text()
    for section in SECTIONS:
        assert f"\n## {section}" in report, section
    assert "smoke run" in report
    assert report.count("One text of median length") == len(SIZES)
    results = json.loads((smoke_run / "results.json").read_text())
    for target in results["targets"]:
        assert target["target"] in report
    int8 = report.split("\n## INT8 builds")[1].split("\n## ")[0]
    dynamic_rows = [line.split(" | ") for line in int8.splitlines() if line.startswith("| bert-base | INT8 dynamic |")]
    assert len(dynamic_rows) == 1 and "–" not in dynamic_rows[0][2:7], dynamic_rows  # in process, Triton, agreement
    # The BERT-family slots compare fused and unfused exports: both graphs, both batches, the fused operators named.
    fused = report.split("\n## Fused graphs")[1].split("\n## ")[0]
    for graph in ("FP32", "INT8"):
        row = next(line.split(" | ") for line in fused.splitlines() if line.startswith(f"| bert-base | {graph} |"))
        assert all(float(cell) > 0 for cell in row[2:6]) and "MultiHeadAttention" in row[7], row


def test_gemm_ceiling_and_each_models_share_of_it(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    gemm = results["gemm_ceiling"]
    assert {"avx512_vnni", "avx_vnni", "amx_int8"} <= set(results["machine"]["cpu"]["flags"])
    points = {(p["precision"], p["threads"], p["tokens"]): p for p in gemm["points"]}
    assert set(points) == {(precision, threads, tokens) for precision in ("int8", "fp32") for threads in (1, 2)
                           for tokens in results["settings"]["gemm_tokens"]}
    assert all(p["macs_per_s"] > 0 and p["tops"] == pytest.approx(2 * p["macs_per_s"] / 1e12, abs=1e-4)
               for p in points.values())
    rates = {precision: points[precision, gemm_ceiling.CEILING_THREADS, gemm_ceiling.CEILING_TOKENS]["macs_per_s"]
             for precision in ("int8", "fp32")}
    for size, r in results["sizes"].items():
        c = r["gemm_ceiling"]
        macs = c["macs_per_token"]
        assert macs["fp32"] > 0 and macs["int8"]["int8"] + macs["int8"]["fp32"] == macs["fp32"], size
        # The share, again from the JSON's own figures: the served best over the texts/s the GEMMs alone allow.
        seconds_per_token = {"int8": macs["int8"]["int8"] / rates["int8"] + macs["int8"]["fp32"] / rates["fp32"],
                             "fp32": macs["fp32"] / rates["fp32"]}
        for precision, model in (("int8", "ner"), ("fp32", "ner_fp32")):
            best = max(p["throughput_per_s"] for p in r["triton_sdk"][model])
            ceiling = 1 / seconds_per_token[precision] / c["mean_tokens_per_text"]
            assert c["share"][precision] == pytest.approx(best / ceiling, rel=1e-3), (size, precision)
    # The BERT slot's weight GEMMs, from its config: every layer's Q, K, V, output and feed-forward pair in INT8,
    # the label head in FP32.
    config = json.loads((Path(results["sizes"]["bert-base"]["model"]["checkpoint"]) / "config.json").read_text())
    hidden, head = config["hidden_size"], config["hidden_size"] * len(config["id2label"])
    encoder = config["num_hidden_layers"] * (4 * hidden**2 + 2 * hidden * config["intermediate_size"])
    assert results["sizes"]["bert-base"]["gemm_ceiling"]["macs_per_token"] == {
        "fp32": encoder + head, "int8": {"int8": encoder, "fp32": head}}
    report = (smoke_run / "report.md").read_text()
    section = report.split("\n## Machine ceiling")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith(("| INT8 |", "| FP32 |"))]
    assert [row[:2] for row in rows] == [["| INT8", "1"], ["| INT8", "2"], ["| FP32", "1"], ["| FP32", "2"]]
    targets = report.split("\n## Targets")[1].split("\n## ")[0]
    for size, r in results["sizes"].items():
        for precision, label in (("int8", "INT8 (`ner`)"), ("fp32", "FP32 (`ner_fp32`)")):
            (row,) = [line for line in targets.splitlines() if line.startswith(f"| {size} | {label} |")]
            assert row.endswith(f" | {r['gemm_ceiling']['share'][precision]:.1%} |"), row


def test_pipeline_work_ceiling_and_the_served_share_of_it(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    report = (smoke_run / "report.md").read_text()
    section = report.split("\n## Pipeline work")[1].split("\n## ")[0]
    for size, r in results["sizes"].items():
        work = r["pipeline_work"]
        # The model that runs the served encoder, as the server's statistics name it.
        assert work["encoder_model"] == encoder_model(r["triton_sdk"]["ner"][0]["server_stats"], "int8"), size
        for group, figures in [*work["ms_per_text"].items(), ("after idling", work["ms_per_text_after_idle"])]:
            assert all(figures[phase] > 0 for phase in ("tokenizer", "encoder", "decoder")), (size, group)
            assert figures["total"] == pytest.approx(figures["tokenizer"] + figures["encoder"] + figures["decoder"],
                                                     abs=2e-3)
        fastest = min(figures["total"] for figures in work["ms_per_text"].values())
        assert work["ceiling_texts_per_s"] == pytest.approx(work["cores"] * 1000 / fastest, rel=1e-3)
        served = max(p["throughput_per_s"] for p in r["perf_analyzer"]["runs"]
                     if (p["model"], p["protocol"]) == ("ner", "grpc"))
        (row,) = [line for line in section.splitlines() if line.startswith(f"| {size} |")]
        assert row.endswith(f" | {served:.2f} | {served / work['ceiling_texts_per_s']:.1%} |"), row
        after_idle = " / ".join(f"{work['ms_per_text_after_idle'][phase]:.2f}" for phase in ("tokenizer", "encoder",
                                                                                              "decoder"))
        assert row.split(" | ")[3] == after_idle, row


def test_plots_are_pngs(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    assert set(results["plots"]) == {"throughput_vs_concurrency", "latency_percentiles", "fp32_vs_int8"}
    for file in results["plots"].values():
        data = (smoke_run / file).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
        assert f"]({file})" in (smoke_run / "report.md").read_text()
