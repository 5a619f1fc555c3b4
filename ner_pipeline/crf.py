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


def _batch(emissions: np.ndarray, lengths) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Emissions as float64 [B, n, C] (one window [n, C] is a batch of one) with their rows sorted longest first,
    the sorted lengths, the order that sorted them, and how many rows are still running at each position."""
    batch = np.asarray(emissions, dtype=np.float64)
    if batch.ndim == 2:
        batch = batch[None]
    lengths = np.full(len(batch), batch.shape[1]) if lengths is None else np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    lengths = lengths[order]
    running = (lengths[None, :] > np.arange(batch.shape[1])[:, None]).sum(axis=1).tolist()
    return batch[order], lengths, order, running


def _unsorted(result: np.ndarray, order: np.ndarray, single: bool) -> np.ndarray:
    if single:
        return result[0]
    out = np.empty_like(result)
    out[order] = result
    return out


def viterbi(emissions: np.ndarray, crf: CrfParameters, lengths=None) -> np.ndarray:
    """Best tag paths for emissions [B, n, C] whose rows hold ``lengths`` positions (all n by default) → [B, n],
    past a row's length its last tag; one window [n, C] → [n]. The rows of a batch share each step's NumPy calls,
    which is where the time goes at these sizes, and a step runs only the rows that reach it."""
    batch, lengths, order, running = _batch(emissions, lengths)
    b, n, c = batch.shape
    paths = np.zeros((n, b), dtype=np.int64)
    if n and b:
        steps = batch.transpose(1, 0, 2)  # [n, B, C]
        rows, columns = np.arange(b)[:, None], np.arange(c)
        # candidates [row, to, from]: the reduction runs along the contiguous last axis
        incoming = np.ascontiguousarray(crf.transitions.T)
        score = crf.start_transitions + steps[0]
        backpointers = np.empty((n, b, c), dtype=np.int64)
        k = b
        for t in range(1, n):
            if running[t] != k:
                k = running[t]
                if not k:
                    break
                backpointers[t:, k:] = columns  # past a row's end its path keeps its last tag
            candidates = score[:k, None, :] + incoming
            best = candidates.argmax(axis=2)
            if k == b:  # no slicing: the common case, and a lone window's every step
                score = candidates[rows, columns, best] + steps[t]
                backpointers[t] = best
            else:
                score[:k] = candidates[rows[:k], columns, best] + steps[t, :k]
                backpointers[t, :k] = best
        tag = (score + crf.end_transitions).argmax(axis=1)
        if b == 1:  # a lone window, the latency case: scalar steps cost a tenth of fancy indexing
            pointers, last = backpointers[:, 0], int(tag[0])
            for t in range(n - 1, 0, -1):
                paths[t, 0] = last
                last = pointers[t, last]
            paths[0, 0] = last
        else:
            for t in range(n - 1, 0, -1):
                paths[t] = tag
                tag = backpointers[t, rows[:, 0], tag]
            paths[0] = tag
    return _unsorted(paths.T, order, np.ndim(emissions) == 2)


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


def marginals(emissions: np.ndarray, crf: CrfParameters, lengths=None) -> np.ndarray:
    """P(tag at position t = c | all emissions of its row), by forward-backward: [B, n, C] for emissions [B, n, C]
    whose rows hold ``lengths`` positions (past a row's length: undefined); one window [n, C] → [n, C].

    Runs in probability space (vector-matrix products, several times faster than log space on a CPU). The backward
    pass is the forward pass over each row reversed within its length, with the transitions transposed, so both
    run as one batched product per step over every row; the state is rescaled every few steps and every position
    normalised at the end, so scale factors cancel. A row that underflows is computed again in log space."""
    batch, lengths, order, running = _batch(emissions, lengths)
    b, n, c = batch.shape
    result = np.zeros((b, n, c))
    if n and b:
        positions = np.arange(n)
        full = bool((lengths == n).all())
        # reversed_index[r, s] = position lengths[r] - 1 - s of row r (s past the length: itself)
        reversed_index = np.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)

        def reverse_rows(x):
            return x[:, ::-1] if full else np.take_along_axis(x, reversed_index[:, :, None], axis=1)

        step = np.exp(batch - batch.max(axis=2, keepdims=True))
        transition = np.exp(crf.transitions - crf.transitions.max())
        both = np.stack([transition, transition.T])
        # scores[t] = (forward, backward) of every row: before position t's own emission, the backward one over the
        # reversed row; laid out by position so that each step reads and writes one contiguous block
        weights = np.stack([step, reverse_rows(step)], axis=2).transpose(1, 2, 0, 3).copy()  # [n, 2, B, C]
        scores = np.ones((n, 2, b, c))
        scores[0, 0] = np.exp(crf.start_transitions - crf.start_transitions.max())
        scores[0, 1] = np.exp(crf.end_transitions - crf.end_transitions.max())
        state = scores[0] * weights[0]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
            for t in range(1, n):
                k = running[t]
                if not k:
                    break
                if k == b:  # no slicing: the common case, and a lone window's every step
                    scores[t] = product = state @ both
                    state = product * weights[t]
                else:
                    scores[t, :, :k] = product = state[:, :k] @ both
                    state[:, :k] = product * weights[t, :, :k]
                if t % 8 == 0:
                    state /= state.sum(axis=2, keepdims=True)
            forward, backward = scores.transpose(1, 2, 0, 3)  # each [B, n, C]
            joint = forward * step * reverse_rows(backward)
            result = joint / joint.sum(axis=2, keepdims=True)
        valid = positions < lengths[:, None]
        broken = (valid & ~np.isfinite(result).all(axis=2)).any(axis=1)
        for r in np.flatnonzero(broken):
            result[r, : lengths[r]] = _marginals_log_space(batch[r, : lengths[r]], crf)
    return _unsorted(result, order, np.ndim(emissions) == 2)


def softmax(emissions: np.ndarray) -> np.ndarray:
    shifted = emissions.astype(np.float64) - emissions.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
