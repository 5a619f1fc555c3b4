"""Linear-chain CRF inference: the Viterbi path and per-position marginal probabilities of one window.

Conventions follow the common PyTorch CRF layers (and RaNER's head): ``transitions[i, j]`` scores the move from
tag i to tag j, ``start_transitions`` is added at the first position and ``end_transitions`` at the last.

The recursions run in hmmlearn's compiled kernels (``hmmlearn._hmmc``, pinned in requirements/serve.txt), on the
hidden Markov model that gives every tag path the CRF's probability: each row of ``exp(transitions)`` normalised to
sum to one, its log normaliser added to the emissions of every position but the last, the end transitions to the
last. hmmlearn's public ``decode``/``predict_proba`` validate the model on every call, which costs ten times the
kernels on a 50-position window; the kernels alone cost a few microseconds per position, where NumPy loops over
positions cost one call per step (tests/test_crf.py checks them against brute force).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from hmmlearn import _hmmc


@dataclass(frozen=True)
class _Chain:
    start: np.ndarray  # [C], sums to 1
    transitions: np.ndarray  # [C, C], rows sum to 1
    row_log_norm: np.ndarray  # [C]: added to the emissions of every position but the last
    end: np.ndarray  # [C]: added to the emissions of the last position

    def frame_scores(self, emissions: np.ndarray) -> np.ndarray:
        scores = np.array(emissions, dtype=np.float64)
        scores[:-1] += self.row_log_norm
        scores[-1] += self.end
        return scores


@dataclass(frozen=True)
class CrfParameters:
    transitions: np.ndarray  # [C, C]
    start_transitions: np.ndarray  # [C]
    end_transitions: np.ndarray  # [C]

    @classmethod
    def from_npz(cls, path: str) -> "CrfParameters":
        with np.load(path) as data:
            return cls(*(data[name].astype(np.float64) for name in ("transitions", "start_transitions", "end_transitions")))

    @cached_property
    def chain(self) -> _Chain:
        peak = self.transitions.max(axis=1, keepdims=True)
        weights = np.exp(self.transitions - peak)
        row_sums = weights.sum(axis=1, keepdims=True)
        start = np.exp(self.start_transitions - self.start_transitions.max())
        return _Chain(start / start.sum(), weights / row_sums, (np.log(row_sums) + peak)[:, 0],
                      np.asarray(self.end_transitions, dtype=np.float64))


def viterbi(emissions: np.ndarray, crf: CrfParameters) -> np.ndarray:
    """The best tag path [n] of one window's emissions [n, C]."""
    if not len(emissions):
        return np.zeros(0, dtype=np.int64)
    chain = crf.chain
    return _hmmc.viterbi(chain.start, chain.transitions, chain.frame_scores(emissions))[1]


def _marginals_log_space(emissions: np.ndarray, crf: CrfParameters) -> np.ndarray:
    chain = crf.chain
    scores = chain.frame_scores(emissions)
    joint = _hmmc.forward_log(chain.start, chain.transitions, scores)[1]
    joint += _hmmc.backward_log(chain.start, chain.transitions, scores)
    return _normalised(np.exp(joint - joint.max(axis=1, keepdims=True)))


def _normalised(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum(axis=1, keepdims=True)


def marginals(emissions: np.ndarray, crf: CrfParameters) -> np.ndarray:
    """P(tag at position t = c | the window's emissions) [n, C], by forward-backward on one window [n, C].

    Runs in probability space with a scale factor per position (each position's scores shifted to a peak of one; the
    shifts cancel in the normalisation), several times faster than log space; a window whose forward pass
    underflows even so (hmmlearn raises) is computed in log space."""
    if not len(emissions):
        return np.zeros((0, np.shape(emissions)[1]))
    chain = crf.chain
    scores = chain.frame_scores(emissions)
    frames = np.exp(scores - scores.max(axis=1, keepdims=True))
    try:
        _, forward, scaling = _hmmc.forward_scaling(chain.start, chain.transitions, frames)
        backward = _hmmc.backward_scaling(chain.start, chain.transitions, frames, scaling)
    except ValueError:
        return _marginals_log_space(emissions, crf)
    return _normalised(forward * backward)


def softmax(emissions: np.ndarray) -> np.ndarray:
    shifted = emissions.astype(np.float64) - emissions.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
