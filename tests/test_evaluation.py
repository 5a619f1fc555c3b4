"""The evaluation command end to end: a BIO file through the served ensembles via the SDK, against in-process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from commands import run_scoring_command
from ner_model.data import REPO_ROOT
from texts import AWKWARD_TEXTS, expected_entities
from ner_model.scoring import tags_from_spans

pytestmark = pytest.mark.server


def write_bio(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            tags = tags_from_spans(len(text), [(t, s, e) for t, s, e in expected_entities(text)])
            for char, tag in zip(text, tags):
                f.write(f"{char}\t{tag}\n")
            f.write("\n")


def test_evaluation_command_scores_served_models_and_matches_in_process(served, tmp_path):
    # One code point per line, as MSRA: keep texts without whitespace or control characters.
    texts = [t for t in AWKWARD_TEXTS if t.isprintable() and not any(c.isspace() for c in t)]
    texts += ["王小明和李四在长江边", "没有实体的句子"]
    bio = tmp_path / "sample.bio"
    write_bio(bio, texts)
    result, report = run_scoring_command("evaluation", served, bio, tmp_path / "report.json", timeout=300)
    n_gold = sum(len(expected_entities(t)) for t in texts)
    assert report["gold_entities"] == n_gold and report["sentences"] == len(texts)
    for model in ("ner", "ner_fp32"):
        assert report["models"][model]["overall"]["f1"] == 1.0
        assert report["models"][model]["overall"]["support"] == n_gold
    assert report["served_fp32_equals_in_process"] is True
    assert report["served_fp32_against_in_process"]["differing_entities"] == 0
    assert "overall" in result.stdout and "ner_fp32" in result.stdout


def test_evaluation_command_reports_a_down_server(tmp_path):
    from serving.server import free_port

    result = subprocess.run(
        [sys.executable, "-m", "evaluation", "--url", f"127.0.0.1:{free_port()}", "--limit", "5",
         "--output", str(tmp_path / "r.json")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 3
    assert "error:" in result.stderr
