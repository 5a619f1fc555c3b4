"""perf/models.py: the BERT-base stand-in's head is calibrated to MSRA train's entity rate (checked on a tiny random
BERT of the same form, so it runs in seconds)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from ner_model.data import msra_file, read_bio, vocab_file, write_tokenizer_files
from export.synthetic import constraint_crf
from perf.models import BIO_LABELS, entity_rate_bias

pytestmark = pytest.mark.unit


def test_entity_rate_bias_matches_msra_train_rate(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=21128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, id2label=dict(enumerate(BIO_LABELS)),
                        label2id={label: i for i, label in enumerate(BIO_LABELS)})
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():  # a head that, unshifted, tags far more entities than MSRA has
        model.classifier.bias.copy_(torch.tensor([-2.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    write_tokenizer_files(tmp_path, vocab_file())
    crf = constraint_crf(BIO_LABELS, "BIO")

    shift, rate, target = entity_rate_bias(model, tmp_path, crf, sentences=60)

    train = read_bio(msra_file("train"))
    expected = sum(tag.startswith("B-") for _, tags in train for tag in tags) / len(train)
    assert abs(target - expected) < 1e-9 and 1.0 < expected < 2.5
    assert shift > 0.5  # the O logit had to rise
    assert abs(rate - target) < 0.3, (rate, target)
