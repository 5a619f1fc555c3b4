"""Golden files pin down the decoder: BIO/BIOES/BMES chunking, CRF Viterbi vs argmax, window merging.

After an intended change: `.venv/bin/python -m pytest tests/test_decoder_golden.py --update-golden` rewrites
tests/golden/decoder.json (the option is tests/lanes.py's); review its diff. A missing golden file is a failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.synthetic import constraint_crf
from ner_pipeline import CrfParameters, Decoder

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden" / "decoder.json"
TYPES = ("LOC", "ORG", "PER")


def labels_for(scheme: str) -> list[str]:
    prefixes = {"BIO": "BI", "BIOES": "BIES", "BMES": "BMES"}[scheme]
    return ["O"] + [f"{p}-{t}" for t in TYPES for p in prefixes]


def emissions(labels: list[str], tags: list[str], seed: int, strength: float = 4.0) -> np.ndarray:
    """Scores that favour ``tags`` (a tag of the form "a|b" favours a, with b close behind)."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0, 0.3, size=(len(tags), len(labels)))
    for i, tag in enumerate(tags):
        first, _, second = tag.partition("|")
        scores[i, labels.index(first)] += strength
        if second:
            scores[i, labels.index(second)] += strength - 0.5
    return scores.astype(np.float32)


def window_rows(text: str, labels, windows: list[tuple[int, list[str]]], seed: int):
    """Rows as the tokenizer lays them out: [CLS], one scored position per character, [SEP], padding."""
    rows = []
    for k, (start, tags) in enumerate(windows):
        n = len(tags)
        logits = np.zeros((n + 4, len(labels)), dtype=np.float32)
        logits[1 : n + 1] = emissions(labels, tags, seed + k)
        spans = np.full((n + 4, 2), -1, dtype=np.int32)
        spans[1 : n + 1, 0] = np.arange(start, start + n)
        spans[1 : n + 1, 1] = np.arange(start + 1, start + n + 1)
        rows.append((logits, spans))
    return rows


CASES = {
    "bio_argmax_stray_inside_dropped": ("BIO", False, "张三去北京和联合国", [(0, "B-PER I-PER O B-LOC I-LOC O I-ORG I-ORG O".split())]),
    "bio_crf_repairs_invalid_start": ("BIO", True, "去王小明家", [(0, "O I-PER|B-PER I-PER I-PER O".split())]),
    "bio_argmax_keeps_invalid_start_out": ("BIO", False, "去王小明家", [(0, "O I-PER|B-PER I-PER I-PER O".split())]),
    "bioes_argmax": ("BIOES", False, "张去北京市的联合", [(0, "S-PER O B-LOC I-LOC E-LOC O B-ORG I-ORG".split())]),
    "bioes_crf_closes_span": ("BIOES", True, "去北京市", [(0, "O B-LOC I-LOC I-LOC|E-LOC".split())]),
    "bmes_argmax": ("BMES", False, "联合国在京", [(0, "B-ORG M-ORG E-ORG O S-LOC".split())]),
    "windows_agree_entity_on_boundary": (
        "BIO", True, "的的的的的张三的的的的的的",
        [(0, "O O O O O B-PER I-PER O O".split()), (4, "O B-PER I-PER O O O O O O".split())],
    ),
    "windows_disagree_hand_over_at_clean_word": (
        "BIO", False, "的的北京的的的上海的的的的",
        # the first window sees 上海 as O near its edge, the second as LOC: the clean cut is before 上
        [(0, "O O B-LOC I-LOC O O O O O".split()), (4, "O O O B-LOC I-LOC O O O O".split())],
    ),
    "three_windows_no_duplicates": (
        "BIO", True, "张三的的的北京的的的的联合国的的",
        [(0, "B-PER I-PER O O O B-LOC I-LOC".split()), (4, "O B-LOC I-LOC O O O O B-ORG".split()),
         (8, "O O O B-ORG I-ORG I-ORG O O".split())],
    ),
}


def decode_case(name: str) -> list[dict]:
    scheme, with_crf, text, windows = CASES[name]
    labels = labels_for(scheme)
    crf = CrfParameters(**{k: v.astype(np.float64) for k, v in constraint_crf(labels, scheme).items()}) if with_crf else None
    return Decoder(labels, crf).decode_text(text, window_rows(text, labels, windows, seed=len(name)))


def test_golden_file_matches_decoder(request):
    actual = {name: decode_case(name) for name in CASES}
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(json.dumps(actual, ensure_ascii=False, indent=1) + "\n")
    assert GOLDEN.exists(), f"{GOLDEN} is missing: write it with --update-golden and review it"
    assert actual == json.loads(GOLDEN.read_text())


# What each case means, written by hand (not by the decoder): (type, span) in order.
EXPECTED = {
    "bio_argmax_stray_inside_dropped": [("PER", "张三"), ("LOC", "北京")],
    "bio_crf_repairs_invalid_start": [("PER", "王小明")],
    "bio_argmax_keeps_invalid_start_out": [],
    "bioes_argmax": [("PER", "张"), ("LOC", "北京市")],
    "bioes_crf_closes_span": [("LOC", "北京市")],
    "bmes_argmax": [("ORG", "联合国"), ("LOC", "京")],
    "windows_agree_entity_on_boundary": [("PER", "张三")],
    "windows_disagree_hand_over_at_clean_word": [("LOC", "北京"), ("LOC", "上海")],
    "three_windows_no_duplicates": [("PER", "张三"), ("LOC", "北京"), ("ORG", "联合国")],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_spans_equal_text_slices(name):
    """Each entity is the case's expected one, and its offsets cut exactly its span out of the text."""
    text = CASES[name][2]
    entities = decode_case(name)
    assert [(e["type"], e["span"]) for e in entities] == EXPECTED[name]
    for entity, (_, span) in zip(entities, EXPECTED[name]):
        assert text[entity["start"] : entity["end"]] == span
