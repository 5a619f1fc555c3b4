"""The evaluation's arithmetic: a hand-computed fixture, and equality with seqeval (strict, IOB2)."""

from __future__ import annotations

import random

import pytest
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

from ner_model.data import msra_file, read_bio
from ner_model.scoring import score, spans_from_tags, tags_from_spans

pytestmark = pytest.mark.unit


def test_hand_computed_fixture():
    gold = {(0, "PER", 0, 2), (0, "LOC", 3, 5), (1, "ORG", 0, 4)}
    predicted = {(0, "PER", 0, 2), (0, "LOC", 3, 4), (1, "ORG", 0, 4), (1, "PER", 5, 6)}
    s = score(gold, predicted)
    assert s["per_type"]["PER"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1, "predicted": 2})
    assert s["per_type"]["LOC"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 1})
    assert s["per_type"]["ORG"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1, "predicted": 1})
    assert s["overall"] == pytest.approx({"precision": 0.5, "recall": 2 / 3, "f1": 4 / 7, "support": 3, "predicted": 4})


def test_equals_seqeval_strict_on_msra_test_with_perturbed_predictions():
    sentences = read_bio(msra_file("test"))[:600]
    rng = random.Random(0)
    gold, predicted, gold_tags, predicted_tags = set(), set(), [], []
    for i, (chars, tags) in enumerate(sentences):
        spans = spans_from_tags(i, tags)
        gold |= spans
        # Drop, shift and retype some entities, and add spurious ones, as a model would.
        mine = []
        for _, t, start, end in sorted(spans):
            r = rng.random()
            if r < 0.1:
                continue
            if r < 0.2:
                end = min(len(chars), end + 1)
            elif r < 0.25:
                t = "ORG" if t != "ORG" else "LOC"
            mine.append((t, start, end))
        if rng.random() < 0.2 and len(chars) > 3:
            mine.append(("PER", len(chars) - 2, len(chars)))
        mine = [m for k, m in enumerate(mine) if all(m[1] >= o[2] or m[2] <= o[1] for o in mine[:k])]  # no overlaps
        predicted |= {(i, t, s, e) for t, s, e in mine}
        gold_tags.append(tags)
        predicted_tags.append(tags_from_spans(len(chars), mine))
    ours = score(gold, predicted)
    theirs = classification_report(gold_tags, predicted_tags, mode="strict", scheme=IOB2, output_dict=True)
    assert ours["overall"]["f1"] == pytest.approx(theirs["micro avg"]["f1-score"], abs=1e-12)
    assert ours["overall"]["precision"] == pytest.approx(theirs["micro avg"]["precision"], abs=1e-12)
    assert ours["overall"]["recall"] == pytest.approx(theirs["micro avg"]["recall"], abs=1e-12)
    for t, s in ours["per_type"].items():
        assert s["f1"] == pytest.approx(theirs[t]["f1-score"], abs=1e-12)
        assert s["support"] == theirs[t]["support"]


def test_training_dev_scores_are_the_same_score_in_percent():
    """Training's dev scoring (``training.evaluate.dev_scores``, what checkpoints record) is this score on IOB2
    character tags, read strictly as seqeval's strict mode reads them: a stray I- opens nothing."""
    from training.evaluate import dev_scores

    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["I-ORG", "I-ORG", "I-ORG", "B-PER", "O"]]
    ours = dev_scores(gold, predicted)
    theirs = classification_report(gold, predicted, mode="strict", scheme=IOB2, output_dict=True)
    assert set(ours) == {"overall", "PER", "LOC", "ORG"}
    assert ours["overall"]["f1"] == pytest.approx(100 * theirs["micro avg"]["f1-score"], abs=1e-9)
    assert ours["overall"]["precision"] == pytest.approx(100 / 3) and ours["overall"]["recall"] == pytest.approx(100 / 3)
    for t in ("PER", "LOC", "ORG"):
        assert ours[t]["f1"] == pytest.approx(100 * theirs[t]["f1-score"], abs=1e-9)
        assert ours[t]["support"] == theirs[t]["support"]
