"""The robustness benchmark: its hand-written fixture, its rows and stray count, and the command end to end against
a served model."""

from __future__ import annotations

import pytest

from evaluation import perturb as P
from evaluation.cli import FIXTURE, ROBUSTNESS_KINDS
from evaluation.robustness import build_rows, load_fixture, load_sentences, score_row
from ner_model.scoring import tags_from_spans
from commands import run_scoring_command
from texts import expected_entities

# Each test names its lane: a module-wide marker would also select the server test under -m unit.
unit = pytest.mark.unit


def write_bio(path, sentences):
    with open(path, "w", encoding="utf-8") as f:
        for text, spans in sentences:
            for char, tag in zip(text, tags_from_spans(len(text), list(spans))):
                f.write(f"{char}\t{tag}\n")
            f.write("\n")


@unit
def test_the_fixture_has_at_least_150_well_formed_entities_of_every_type():
    fixture = load_fixture(FIXTURE)
    entities = [e for _, spans in fixture for e in spans]
    assert len(entities) >= 150
    assert {t for t, _, _ in entities} == {"PER", "LOC", "ORG"}
    for text, spans in fixture:
        previous_end = 0
        for entity_type, start, end in sorted(spans, key=lambda s: s[1]):
            assert 0 <= start < end <= len(text), (text, start, end)
            assert start >= previous_end, f"overlapping entities in {text!r}"
            name = text[start:end]
            assert name == name.strip() and not any(c in P.SENTENCE_ENDS for c in name), (text, name)
            previous_end = end


@unit
def test_the_fixture_is_web_and_social_media_text():
    texts = "".join(text for text, _ in load_fixture(FIXTURE))
    assert "@" in texts and "#" in texts and "http" in texts and "\n" in texts
    assert "\u200d" in texts and any(0x1F1E6 <= ord(c) <= 0x1F1FF for c in texts)  # a ZWJ sequence, a flag
    assert "臺" in texts and "學" in texts  # Traditional characters


@unit
def test_dev_is_the_training_dev_split(tmp_path):
    from training.data import split_train_dev

    sentences = [(f"第{i}句在北京", (("LOC", len(str(i)) + 3, len(str(i)) + 5),)) for i in range(12)]
    (tmp_path / "msra").mkdir()
    write_bio(tmp_path / "msra" / "train.bio", sentences)
    source, dev = load_sentences("dev", tmp_path, dev_size=5)
    assert dev == split_train_dev(sentences, 5)[1]
    assert "last 5 sentences" in source
    assert load_sentences("dev", tmp_path, dev_size=5, limit=2)[1] == dev[:2]


@unit
def test_rows_and_the_stray_count():
    sentences = [("张三在北京。", (("PER", 0, 2), ("LOC", 3, 5))), ("李四去了上海", (("PER", 0, 2), ("LOC", 4, 6)))]
    rows = build_rows(sentences, sentences[:1], ROBUSTNESS_KINDS, (0.05, 0.2), seed=3, join_size=2)
    assert list(rows) == ["clean", "emoji 5%", "emoji 20%", "rare 5%", "rare 20%", "latin 5%", "latin 20%",
                          "width 5%", "width 20%", "space 5%", "space 20%", "joined", "joined 5%", "joined 20%",
                          "traditional", "fixture"]
    assert rows["joined"][0].text == "张三在北京。李四去了上海" and rows["joined"][0].seams == (6,)
    assert rows["traditional"][1].text == "李四去了上海"
    assert rows == build_rows(sentences, sentences[:1], ROBUSTNESS_KINDS, (0.05, 0.2), seed=3, join_size=2)
    joined = rows["joined"]
    predicted = [[{"type": "PER", "start": 0, "end": 2}, {"type": "LOC", "start": 3, "end": 7},  # 北京。李: stray
                  {"type": "LOC", "start": 10, "end": 12}]]
    scores = score_row(joined, predicted)
    assert scores["stray"] == 1 and scores["stray_share"] == pytest.approx(1 / 3)
    assert scores["overall"]["precision"] == pytest.approx(2 / 3) and scores["overall"]["recall"] == pytest.approx(2 / 4)


@pytest.mark.server
def test_the_command_scores_every_row_and_its_clean_row_is_the_evaluation_figure(served, tmp_path):
    from evaluation.served import evaluate

    texts = ["王小明和李四在长江边", "张三去了北京的清华大学。", "欧阳娜娜在上海", "没有实体的句子", "联合国在乌鲁木齐开会",
             "微软公司和Microsoft是一家", "李四在上海，张三在北京。"]
    bio = tmp_path / "sample.bio"
    write_bio(bio, [(t, expected_entities(t)) for t in texts])
    result, report = run_scoring_command("evaluation.robustness", served, bio, tmp_path / "robustness.json",
                                         "--limit", "6", "--seed", "5")
    assert report["sentences"] == 6 and report["seed"] == 5 and report["rates"] == [0.05, 0.2]
    rows = ["clean"] + [f"{k} {r}%" for k in ROBUSTNESS_KINDS[:5] for r in (5, 20)] + \
        ["joined", "joined 5%", "joined 20%", "traditional", "fixture"]
    assert list(report["rows"]) == rows
    assert report["rows"]["fixture"]["gold_entities"] >= 150
    assert report["rows"]["emoji 20%"]["inserted_pieces"] > 0
    for model in ("ner", "ner_fp32", "in_process_fp32"):
        assert list(report["models"][model]) == rows
        for scores in report["models"][model].values():
            assert 0 <= scores["overall"]["f1"] <= 1 and 0 <= scores["stray_share"] <= 1
    # The served FP32 ensemble and the in-process pipeline agree on every row.
    assert report["models"]["ner_fp32"] == report["models"]["in_process_fp32"]
    reference = evaluate(bio, ("ner", "ner_fp32"), url=served.grpc_url, limit=6)
    for model in ("ner", "ner_fp32"):
        assert report["models"][model]["clean"]["overall"] == reference["models"][model]["overall"]
        assert report["models"][model]["clean"]["per_type"] == reference["models"][model]["per_type"]
    assert report["models"]["ner"]["clean"]["overall"]["f1"] == 1.0
    assert "fixture" in result.stdout and "stray %" in result.stdout
    # Baidu LAC's untrained tagger on the fixture: the yardstick for text of other sources
    lac = report["baselines"]["lac_untrained"]
    assert list(lac) == ["fixture"] and 0.5 < lac["fixture"]["overall"]["f1"] <= 1
    assert "lac_untrained" in result.stdout


@unit
def test_the_command_refuses_unknown_kinds_and_rates_outside_0_to_1(capsys):
    from evaluation.cli import ROBUSTNESS_SETTINGS

    args = ROBUSTNESS_SETTINGS.parse(["--kinds", "emoji traditional", "--rates", "0.1, 0.5"], prog="robustness",
                                     environ={})
    assert args.kinds == ("emoji", "traditional") and args.rates == (0.1, 0.5)
    for argv, message in ((["--kinds", "emoji,typos"], "unknown kind typos"), (["--rates", "0.05,0"], "at most 1")):
        with pytest.raises(SystemExit):
            ROBUSTNESS_SETTINGS.parse(argv, prog="robustness", environ={})
        assert message in capsys.readouterr().err
