"""The pieces training, export and evaluation share: the BIO reader, the data-path resolver, the scheme → labels table,
the comparison of served and in-process entities, the INT8/FP32 agreement and the ensemble members' command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ner_model.data import DEFAULT_DATA_DIR, REPO_ROOT, msra_file, read_bio, vocab_file

pytestmark = pytest.mark.unit


def test_bio_reader_sentences_empty_tags_and_one_code_point_per_position(tmp_path):
    path = tmp_path / "x.bio"
    path.write_text("张\tB-PER\n三\tI-PER\n在\t\n\n\n北\tB-LOC\r\n京\tI-LOC\n𠀀x\tO\n", encoding="utf-8")
    assert read_bio(path) == [(["张", "三", "在"], ["B-PER", "I-PER", "O"]),
                              (["北", "京", "𠀀"], ["B-LOC", "I-LOC", "O"])]


def test_data_dir_comes_from_ner_data_dir_else_beside_the_repository(tmp_path):
    assert DEFAULT_DATA_DIR == REPO_ROOT.parent / "shared" / "data"
    code = "from ner_model.data import msra_file, vocab_file; print(msra_file('test')); print(vocab_file())"
    env = {k: v for k, v in os.environ.items() if k != "NER_DATA_DIR"}
    for environ, root in (({**env, "NER_DATA_DIR": str(tmp_path)}, tmp_path), (env, DEFAULT_DATA_DIR)):
        out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
        assert out.stdout.split() == [str(root / "msra" / "test.bio"),
                                      str(root / "vocab" / "bert-base-chinese-vocab.txt")]
    assert msra_file("train", tmp_path) == tmp_path / "msra" / "train.bio"
    assert vocab_file(tmp_path) == tmp_path / "vocab" / "bert-base-chinese-vocab.txt"


def test_scheme_labels_one_table_for_training_flags_and_the_decoder():
    from ner_pipeline.tagging import detect_scheme, scheme_labels
    from training import data as D

    assert D.scheme_labels("bio") == D.LABELS == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    bioes = D.scheme_labels("bioes")
    assert bioes == ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "ORG") for p in "BIES"]
    assert scheme_labels("BMES", ["X"]) == ["O", "B-X", "M-X", "E-X", "S-X"]
    for flag, name in D.TAG_SCHEMES.items():
        assert detect_scheme(D.scheme_labels(flag)) == name
    with pytest.raises(ValueError):
        D.scheme_labels("BIO")  # the flag's spelling only
    with pytest.raises(ValueError):
        scheme_labels("IOB1", ["PER"])


def test_served_equals_in_process_only_when_the_entity_sets_do():
    from evaluation.served import compare

    a = {(0, "PER", 0, 2), (1, "LOC", 3, 5)}
    assert compare(a, set(a)) == {"equal": True, "differing_entities": 0, "only_served": 0, "only_in_process": 0}
    # same counts, so the same P/R/F1 against any gold set, but other entities
    b = {(0, "PER", 0, 2), (1, "LOC", 3, 6)}
    assert compare(a, b) == {"equal": False, "differing_entities": 2, "only_served": 1, "only_in_process": 1}


class _Session:
    """Stands in for an ONNX Runtime session: fixed logits."""

    def __init__(self, logits):
        self.logits = logits

    def run(self, names, feed):
        return [self.logits]


def test_label_agreement_over_real_or_given_positions():
    from export.quantize import label_agreement

    ids = np.zeros((1, 4), np.int64)
    mask = np.array([[1, 1, 1, 0]])
    fp32 = np.eye(3)[[0, 1, 2, 0]][None]  # labels 0 1 2 0
    int8 = np.eye(3)[[0, 1, 0, 1]][None]  # labels 0 1 0 1
    assert label_agreement(_Session(fp32), _Session(int8), [(ids, mask)]) == pytest.approx(2 / 3)
    scored = np.array([[False, True, False, False]])
    assert label_agreement(_Session(fp32), _Session(int8), [(ids, mask, scored)]) == 1.0


def test_ensemble_members_get_the_parents_options_as_flags():
    from training.cli import parse_args
    from training.train import MEMBER_SETTINGS_SET_BY_ENSEMBLE, member_argv

    args = parse_args(["--no-time-schedule", "--weight-decay", "0.05", "--data-dir", "/data", "--members", "2"])
    member = parse_args(member_argv(args, 14, Path("/m/seed-14"), 1, 30.0))
    assert not member.time_schedule and member.weight_decay == 0.05 and member.data_dir == Path("/data")
    assert member.seed == 14 and member.output == Path("/m/seed-14") and member.members == 1
    assert member.threads == 1 and member.max_minutes == 30.0 and member.progress_lines and not member.progress
    assert {k: v for k, v in vars(member).items() if k not in MEMBER_SETTINGS_SET_BY_ENSEMBLE} == {
        k: v for k, v in vars(args).items() if k not in MEMBER_SETTINGS_SET_BY_ENSEMBLE}
