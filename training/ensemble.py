"""Several ``LacBiGruCrf`` members trained from different seeds, served as one model.

Members differ most on the entities none of them saw in training, so averaging helps where the single model is
weakest. The ensemble is still one RaNER-style checkpoint: ``forward(input_ids, attention_mask)`` returns the mean of
the members' emissions, and its CRF holds the mean of their transition scores. A path's score under that CRF is the
mean of its scores under the members' CRFs, so the server's ordinary Viterbi decodes the ensemble exactly. The word
lexicon is the same for every member (same dictionary, same table), so it is stored and matched once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

from .model import CRF, CRF_PARAMETERS, CrfTagger, LacBiGruCrf, LexiconMatcher

MODEL_TYPE = "lac_bigru_crf_ensemble"
PROGRESS_PREFIX = "@progress "  # a member's machine-readable progress line: "@progress <step> <total>"


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
        buckets, max_len = lexicon_shapes.pop()
        self.lexicon = LexiconMatcher(buckets, max_len) if buckets else None
        for m in members:
            if m.lexicon_buckets:
                m.lexicon = None  # matched once, by the ensemble
        self.members = nn.ModuleList(members)
        self.crf = CRF(self.num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        words = self.lexicon(input_ids, attention_mask) if self.lexicon is not None else None
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


def average_members(members: list[LacBiGruCrf]) -> LacBiGruCrf:
    """One model whose weights are the mean of the members' ("model soup"): it costs what one member costs to serve.

    Only meaningful for members that started from the same weights (``--init-seed``) and so stay in one basin of the
    loss; the lexicon tables and every other non-float buffer must be identical."""
    first = members[0]
    states = [m.state_dict() for m in members]
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([s[key] for s in states]).mean(dim=0)
        elif all(torch.equal(s[key], value) for s in states[1:]):
            averaged[key] = value
        else:
            raise ValueError(f"members differ in {key}, which cannot be averaged")
    model = LacBiGruCrf(dict(first.config))
    model.load_state_dict(averaged)
    return model.eval()


def load_tagger(directory) -> CrfTagger:
    """A project checkpoint, single model or ensemble, by its ``config.json`` ``model_type``."""
    model_type = json.loads((Path(directory) / "config.json").read_text()).get("model_type")
    return (LacBiGruCrfEnsemble if model_type == MODEL_TYPE else LacBiGruCrf).from_pretrained(directory)


# ---------------------------------------------------------------------------------------------------- training
def member_seeds(seed: int, members: int) -> list[int]:
    return [seed + i for i in range(members)]


def train_members(argv_for_member, seeds: list[int], member_dirs: list[Path], show_progress: bool) -> None:
    """Run one ``python -m training`` process per member at once (each with its share of the threads); their
    evaluation lines are printed with the member's seed, their steps drive one progress bar each."""
    procs = []
    env = {**os.environ, "NER_TRAIN_PROGRESS_LINES": "1"}
    for seed, directory in zip(seeds, member_dirs):
        cmd = [sys.executable, "-m", "training", *argv_for_member(seed, directory)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                      bufsize=1))
    bars = [None] * len(procs)
    if show_progress:
        from tqdm import tqdm

        bars = [tqdm(total=1, desc=f"member seed {s}", unit="step", position=i, dynamic_ncols=True, mininterval=2.0)
                for i, s in enumerate(seeds)]
    lock = threading.Lock()

    def relay(i: int) -> None:
        for line in procs[i].stdout:
            line = line.rstrip("\n")
            with lock:
                if line.startswith(PROGRESS_PREFIX):
                    if bars[i] is not None:
                        step, total = (int(x) for x in line[len(PROGRESS_PREFIX):].split())
                        bars[i].total = total
                        bars[i].n = step
                        bars[i].refresh()
                    continue
                text = f"[seed {seeds[i]}] {line}"
                if bars[i] is not None:
                    bars[i].write(text)
                else:
                    print(text, flush=True)

    threads = [threading.Thread(target=relay, args=(i,), daemon=True) for i in range(len(procs))]
    for t in threads:
        t.start()
    try:
        codes = [p.wait() for p in procs]
    finally:  # an interrupted run leaves no member training on
        for p in procs:
            if p.poll() is None:
                p.terminate()
    for t in threads:
        t.join()
    for bar in bars:
        if bar is not None:
            bar.close()
    failed = [s for s, c in zip(seeds, codes) if c != 0]
    if failed:
        raise SystemExit(f"ensemble members with seeds {failed} failed (exit codes {codes})")


def remaining_minutes(t_start: float, max_minutes: float, reserve_minutes: float) -> float:
    return max(1.0, max_minutes - (time.time() - t_start) / 60 - reserve_minutes)
