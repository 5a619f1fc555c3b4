"""The default architecture's Traditional-to-Simplified fold (``training.fold``): which characters fold, and a
checkpoint that gains the fold reads Traditional text as the Simplified text, its weights untouched."""

from __future__ import annotations

import json

import pytest
import torch

from ner_model.architecture import LacBiGruCrf, label_config
from ner_model.data import default_data_dir, vocab_file
from training import data as D
from training.fold import fold_table, main

pytestmark = pytest.mark.unit

SIMPLIFIED = "国务院总理李鹏在台北会见了乾隆的后人。"
TRADITIONAL = "國務院總理李鵬在臺北會見了乾隆的後人。"


def test_traditional_characters_fold_to_their_simplified_form_once():
    vocab = ["[PAD]", "臺", "台", "國", "国", "乾", "干", "後", "后", "著", "着", "a", "##臺"]
    table, folded = fold_table(vocab, used_characters={"乾"})
    by_token = {vocab[i]: vocab[int(j)] for i, j in enumerate(table)}
    assert by_token == {**{t: t for t in vocab}, "臺": "台", "國": "国", "後": "后"}
    assert folded == 3 and torch.equal(table[table], table)
    # a character the Simplified training text uses is never folded: 乾 of 乾隆 stays
    assert fold_table(vocab, used_characters=set())[0][vocab.index("乾")] == vocab.index("干")


def test_a_checkpoint_gains_the_fold_and_keeps_its_weights(tmp_path):
    vocab = D.vocab_lines(vocab_file(default_data_dir()))
    torch.manual_seed(0)
    model = LacBiGruCrf({**label_config(D.scheme_labels("bioes")), "vocab_size": len(vocab), "embedding_dim": 8,
                         "hidden_size": 8, "num_attention_layers": 1, "attention_ffn": 16}).eval()
    model.config["training"] = {"dev_size": 1}
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    (checkpoint / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    data = tmp_path / "data"
    (data / "msra").mkdir(parents=True)
    # the training part uses 乾; 後 is only in the dev split (the last sentence, by the checkpoint's training config)
    (data / "msra" / "train.bio").write_text("乾\tO\n隆\tO\n\n後\tO\n", encoding="utf-8")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))

    assert main([str(checkpoint), "--data-dir", str(data)]) == 0
    folded = LacBiGruCrf.from_pretrained(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["fold_traditional"] is True and config["fold"]["characters"] > 1000
    before, after = model.state_dict(), folded.state_dict()
    assert set(after) - set(before) == {"simplified_ids"}
    assert all(torch.equal(before[k], after[k]) for k in before)
    table = folded.simplified_ids
    assert table[vocab.index("乾")] == vocab.index("乾") and table[vocab.index("後")] == vocab.index("后")

    def ids(text):
        return torch.tensor([[vocab.index(c) for c in text]])

    mask = torch.ones_like(ids(SIMPLIFIED))
    with torch.no_grad():
        # Traditional text is read as the Simplified text; Simplified text as before
        assert torch.equal(folded(ids(TRADITIONAL), mask), folded(ids(SIMPLIFIED), mask))
        assert torch.equal(model(ids(SIMPLIFIED), mask), folded(ids(SIMPLIFIED), mask))
        assert not torch.equal(model(ids(TRADITIONAL), mask), folded(ids(TRADITIONAL), mask))

    with pytest.raises(SystemExit, match="not a lac_bigru_crf checkpoint"):
        main([str(tmp_path), "--data-dir", str(data)])
