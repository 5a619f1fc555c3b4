"""The benchmark suite runs end to end in its smoke form (the tiny model standing in for BERT-base, a few requests, real
tritonserver, perf_analyzer, locust), and writes every output: results JSON, a Markdown report with every section,
the PNG plots. So the suite cannot rot; its figures mean nothing here."""

from __future__ import annotations

import json
import shutil

import pytest

from perf.cli import SIZES, main
from perf.report import SECTIONS

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
            assert "encoder_int8" in points[0]["server_stats"] or model == "ner_fp32"
        assert all(p["errors"] == 0 for p in r["triton_sdk_http"]["ner"])
        assert r["memory"]["peak_under_load"]["total_bytes"] > 0
        assert any(name.startswith("encoder_int8") for name in r["memory"]["peak_under_load"]["processes"])
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


def test_report_has_every_section_and_the_targets_table(smoke_run):
    report = (smoke_run / "report.md").read_text()
    for section in SECTIONS:
        assert f"\n## {section}" in report, section
    assert "smoke run" in report
    results = json.loads((smoke_run / "results.json").read_text())
    for target in results["targets"]:
        assert target["target"] in report
    int8 = report.split("\n## INT8 builds")[1].split("\n## ")[0]
    dynamic_rows = [line.split(" | ") for line in int8.splitlines() if line.startswith("| bert-base | INT8 dynamic |")]
    assert len(dynamic_rows) == 1 and "–" not in dynamic_rows[0][2:7], dynamic_rows  # in process, Triton, agreement


def test_plots_are_pngs(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    assert set(results["plots"]) == {"throughput_vs_concurrency", "latency_percentiles", "fp32_vs_int8"}
    for file in results["plots"].values():
        data = (smoke_run / file).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
        assert f"]({file})" in (smoke_run / "report.md").read_text()
