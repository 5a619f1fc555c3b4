"""Text of another source (Resume NER's format and types) scored beside Baidu LAC's untrained tagger: the reader, the
rule for the types MSRA lacks, LAC's offsets, and the command end to end against a served model."""

from __future__ import annotations

import pytest

from evaluation.other_sources import lac_entities, read_bmes, score_predictions
from commands import run_scoring_command
from texts import expected_entities

unit = pytest.mark.unit
RESUME_NAMES = {"PER": "NAME", "LOC": "LOC", "ORG": "ORG"}


def write_bmes(path, sentences, final_blank_line=True):
    """Resume NER's layout: ``char tag`` lines, BMES tags, a blank line after each sentence."""
    lines = []
    for text, spans in sentences:
        tags = ["O"] * len(text)
        for entity_type, start, end in spans:
            if end - start == 1:
                tags[start] = f"S-{entity_type}"
                continue
            tags[start:end] = [f"B-{entity_type}"] + [f"M-{entity_type}"] * (end - start - 2) + [f"E-{entity_type}"]
        lines += [f"{char} {tag}" for char, tag in zip(text, tags)] + [""]
    path.write_text("\n".join(lines if final_blank_line else lines[:-1]) + "\n", encoding="utf-8")


@unit
def test_shared_types_are_renamed_and_the_others_left_out(tmp_path):
    path = tmp_path / "dev.char.bmes"
    write_bmes(path, [("吴重阳，中国国籍，大学本科", [("NAME", 0, 3), ("CONT", 4, 8), ("EDU", 9, 13)]),
                      ("任职于华为公司及深圳", [("ORG", 3, 7), ("LOC", 8, 10)]),
                      ("王女士", [("NAME", 0, 1), ("TITLE", 1, 3)])], final_blank_line=False)
    assert read_bmes(path) == [
        ("吴重阳，中国国籍，大学本科", (("PER", 0, 3),), ((4, 8), (9, 13))),
        ("任职于华为公司及深圳", (("ORG", 3, 7), ("LOC", 8, 10)), ()),
        ("王女士", (("PER", 0, 1),), ((1, 3),)),
    ]


@unit
def test_a_prediction_overlapping_a_left_out_type_counts_neither_way():
    sentences = [("吴重阳，中国国籍", (("PER", 0, 3),), ((4, 8),))]
    right = {"type": "PER", "start": 0, "end": 3}
    on_country = {"type": "LOC", "start": 4, "end": 6}
    wrong = {"type": "ORG", "start": 3, "end": 4}
    assert score_predictions(sentences, [[right, on_country]])["overall"]["f1"] == 1.0
    scores = score_predictions(sentences, [[right, on_country, wrong]])
    assert scores["dropped_on_other_types"] == 1 and scores["overall"]["precision"] == 0.5


@unit
def test_lac_entities_carry_code_point_offsets():
    texts = ["张三在北京市工作", "😀张三在北京市工作𠀀"]
    results = lac_entities(texts)
    assert [(e["type"], e["start"], e["end"]) for e in results[0]] == [("PER", 0, 2), ("LOC", 3, 6)]
    # One code point each for the emoji and the Extension B character (two UTF-16 units each).
    assert ("LOC", 4, 7) in [(e["type"], e["start"], e["end"]) for e in results[1]]


@pytest.mark.server
def test_the_command_scores_the_served_model_in_process_and_lac(served, tmp_path):
    texts = ["王小明和李四在长江边", "张三去了北京的清华大学。", "欧阳娜娜在上海", "没有实体的句子", "联合国在乌鲁木齐开会"]
    sentences = [(t, [(RESUME_NAMES[kind], s, e) for kind, s, e in expected_entities(t)]) for t in texts]
    # Beijing marked a country: the model's LOC there is dropped, not scored wrong.
    sentences[1] = (texts[1], [("NAME", 0, 2), ("CONT", 4, 6), ("ORG", 7, 11)])
    path = tmp_path / "dev.char.bmes"
    write_bmes(path, sentences)
    result, report = run_scoring_command("evaluation.other_sources", served, path, tmp_path / "other_sources.json")
    assert report["sentences"] == 5 and set(report["scores"]) == {"lac_untrained", "ner", "ner_fp32",
                                                                  "in_process_fp32"}
    assert report["gold_entities"] == sum(len(expected_entities(t)) for t in texts) - 1
    for name in ("ner", "ner_fp32", "in_process_fp32"):
        assert report["scores"][name]["overall"]["f1"] == 1.0
        assert report["scores"][name]["dropped_on_other_types"] == 1
    assert report["scores"]["ner_fp32"] == report["scores"]["in_process_fp32"]
    assert "lac_untrained" in result.stdout and "wrote" in result.stdout
