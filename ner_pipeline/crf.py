"""Linear-chain CRF inference in NumPy: Viterbi paths and per-position marginal probabilities.

Conventions follow the common PyTorch CRF layers (and RaNER's head): ``transitions[i, j]`` scores the move from
tag i to tag j, ``start_transitions`` is added at the first position and ``end_transitions`` at the last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CrfParameters:
    transitions: np.ndarray  # [C, C]
    start_transitions: np.ndarray  # [C]
    end_transitions: np.ndarray  # [C]

    @classmethod
    def from_npz(cls, path: str) -> "CrfParameters":
        with np.load(path) as data:
            return cls(*(data[name].astype(np.float64) for name in ("transitions", "start_transitions", "end_transitions")))


def viterbi(emissions: np.ndarray, crf: CrfParameters) -> np.ndarray:
    """Best tag path for emissions [n, C]."""
    n = emissions.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    emissions = emissions.astype(np.float64)
    score = crf.start_transitions + emissions[0]
    backpointers = np.zeros((n, emissions.shape[1]), dtype=np.int64)
    columns = np.arange(emissions.shape[1])
    for t in range(1, n):
        candidates = score[:, None] + crf.transitions
        best = candidates.argmax(axis=0)
        backpointers[t] = best
        score = candidates[best, columns] + emissions[t]
    score = score + crf.end_transitions
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(n - 1, 0, -1):
        path[t - 1] = backpointers[t, path[t]]
    return path


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = x.max(axis=axis, keepdims=True)
    return (peak + np.log(np.exp(x - peak).sum(axis=axis, keepdims=True))).squeeze(axis)


def _marginals_log_space(emissions: np.ndarray, crf: CrfParameters) -> np.ndarray:
    n, c = emissions.shape
    alpha = np.empty((n, c))
    beta = np.empty((n, c))
    alpha[0] = crf.start_transitions + emissions[0]
    for t in range(1, n):
        alpha[t] = _logsumexp(alpha[t - 1][:, None] + crf.transitions, axis=0) + emissions[t]
    beta[-1] = crf.end_transitions
    for t in range(n - 2, -1, -1):
        beta[t] = _logsumexp(crf.transitions + (emissions[t + 1] + beta[t + 1])[None, :], axis=1)
    log_z = _logsumexp(alpha[-1] + crf.end_transitions, axis=0)
    return np.exp(alpha + beta - log_z)


def marginals(emissions: np.ndarray, crf: CrfParameters) -> np.ndarray:
    """P(tag at position t = c | all emissions), by forward-backward; [n, C].

    Runs in probability space (a vector-matrix product per position, several times faster than log space on a CPU),
    with the forward and backward recursions stacked into one batched product per step, and rescaled every few
    steps: every row of the result is normalised at the end, so per-row scale factors cancel. Falls back to log space
    if a step underflows to zero."""
    n, c = emissions.shape
    if n == 0:
        return np.zeros((0, c))
    emissions = emissions.astype(np.float64)
    step = np.exp(emissions - emissions.max(axis=1, keepdims=True))
    transition = np.exp(crf.transitions - crf.transitions.max())
    both = np.stack([transition, transition.T])  # forward: alpha @ T; backward: T @ (step * beta) = (step * beta) @ T'
    # forward[t] = alpha[t] / step[t] (alpha before position t's own emission); backward[t] = beta[t]
    forward = np.empty((n, c))
    backward = np.empty((n, c))
    forward[0] = np.exp(crf.start_transitions - crf.start_transitions.max())
    backward[-1] = np.exp(crf.end_transitions - crf.end_transitions.max())
    state = np.stack([forward[0] * step[0], backward[-1] * step[-1]])[:, None, :]  # [2, 1, C]
    weights = np.stack([step[1:], step[-2::-1]], axis=1)[:, :, None, :] if n > 1 else None  # [n-1, 2, 1, C]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        for t in range(1, n):
            product = state @ both
            forward[t] = product[0, 0]
            backward[n - 1 - t] = product[1, 0]
            state = product * weights[t - 1]
            if t % 8 == 0:
                state /= state.sum(axis=2, keepdims=True)
        joint = forward * step * backward
        result = joint / joint.sum(axis=1, keepdims=True)
    if not np.isfinite(result).all():
        return _marginals_log_space(emissions, crf)
    return result


def softmax(emissions: np.ndarray) -> np.ndarray:
    shifted = emissions.astype(np.float64) - emissions.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
