"""Several ``LacBiGruCrf`` members trained from different seeds, served as one model.

Members differ most on the entities none of them saw in training, so averaging helps where the single model is
weakest. The ensemble is still one RaNER-style checkpoint: ``forward(input_ids, attention_mask)`` returns the mean of
the members' emissions, and its CRF holds the mean of their transition scores. A path's score under that CRF is the
mean of its scores under the members' CRFs, so the server's ordinary Viterbi decodes the ensemble exactly. The word
lexicon is the same for every member (same dictionary, same table), so it is stored and matched once.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .architecture import CRF, CRF_PARAMETERS, CrfTagger, LacBiGruCrf
from .lexicon import LexiconMatcher

MODEL_TYPE = "lac_bigru_crf_ensemble"


class LacBiGruCrfEnsemble(CrfTagger):
    MODEL_TYPE = MODEL_TYPE

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        members = [LacBiGruCrf(c) for c in self.config["members"]]
        self.num_labels = members[0].num_labels
        lexicon_shapes = {(m.lexicon_buckets, int(m.config["lexicon_max_len"]) if m.lexicon_buckets else 0)
                          for m in members}
        if len(lexicon_shapes) != 1:
            raise ValueError(f"ensemble members need one lexicon shape, got {sorted(lexicon_shapes)}")
        if len({m.fold_traditional for m in members}) != 1:
            raise ValueError("ensemble members must all fold Traditional characters, or none")
        buckets, max_len = lexicon_shapes.pop()
        self.lexicon = LexiconMatcher(buckets, max_len) if buckets else None
        for m in members:
            if m.lexicon_buckets:
                m.lexicon = None  # matched once, by the ensemble
        self.members = nn.ModuleList(members)
        self.crf = CRF(self.num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        words = (self.lexicon(self.members[0].folded(input_ids), attention_mask) if self.lexicon is not None
                 else None)
        return torch.stack([m(input_ids, attention_mask, words) for m in self.members]).mean(dim=0)

    @classmethod
    def from_members(cls, members: list[LacBiGruCrf]) -> "LacBiGruCrfEnsemble":
        """The ensemble of trained members (their lexicon tables must be identical)."""
        first = members[0]
        config = {k: first.config[k] for k in ("num_labels", "id2label", "label2id")}
        config["members"] = [dict(m.config) for m in members]
        ensemble = cls(config)
        with torch.no_grad():
            for target, m in zip(ensemble.members, members):
                state = {k: v for k, v in m.state_dict().items() if not k.startswith("lexicon.")}
                target.load_state_dict(state)
            if ensemble.lexicon is not None:
                for m in members[1:]:
                    if not (torch.equal(m.lexicon.fingerprints, first.lexicon.fingerprints)
                            and torch.equal(m.lexicon.codes, first.lexicon.codes)):
                        raise ValueError("ensemble members were trained with different lexicon tables")
                ensemble.lexicon.load_state_dict(first.lexicon.state_dict())
            for name in CRF_PARAMETERS:
                getattr(ensemble.crf, name).copy_(torch.stack([getattr(m.crf, name) for m in members]).mean(dim=0))
        return ensemble.eval()


def load_tagger(directory) -> CrfTagger:
    """A project checkpoint, single model or ensemble, by its ``config.json`` ``model_type``."""
    model_type = json.loads((Path(directory) / "config.json").read_text()).get("model_type")
    return (LacBiGruCrfEnsemble if model_type == MODEL_TYPE else LacBiGruCrf).from_pretrained(directory)
