"""The SDK-overhead benchmark runs against a real server over both protocols and finds the SDK and the raw call in
agreement."""

from __future__ import annotations

import json

import pytest

from perf import sdk_overhead

pytestmark = pytest.mark.server


def test_overhead_report_over_both_protocols(served, tmp_path):
    output = tmp_path / "overhead.json"
    urls = f"grpc://{served.grpc_url},http://{served.http_url}"
    assert sdk_overhead.main(["--urls", urls, "--calls", "6", "--warmup", "1", "--distinct",
                              "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert [r["protocol"] for r in report["results"]] == ["grpc", "http"]
    for result in report["results"]:
        assert result["calls"] == 6 and result["distinct_texts"] is True
        assert result["raw_median_ms"] > 0 and result["sdk_median_ms"] > 0
        assert result["ratio"] == pytest.approx(result["sdk_median_ms"] / result["raw_median_ms"], rel=1e-2)
