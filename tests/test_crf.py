"""CRF inference against brute force over every tag path of a short sequence."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ner_pipeline.crf import CrfParameters, _marginals_log_space, marginals, viterbi

pytestmark = pytest.mark.unit


def brute_force(emissions, crf):
    n, c = emissions.shape
    scores = {}
    for path in itertools.product(range(c), repeat=n):
        scores[path] = (crf.start_transitions[path[0]] + emissions[0, path[0]] + crf.end_transitions[path[-1]]
                        + sum(crf.transitions[path[i - 1], path[i]] + emissions[i, path[i]] for i in range(1, n)))
    log_z = np.logaddexp.reduce(list(scores.values()))
    probs = np.zeros((n, c))
    for path, score in scores.items():
        probs[np.arange(n), list(path)] += np.exp(score - log_z)
    return max(scores, key=scores.get), probs


@pytest.mark.parametrize("seed", range(5))
def test_viterbi_and_marginals_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    c, n = 4, 5
    crf = CrfParameters(rng.normal(size=(c, c)) * 2, rng.normal(size=c), rng.normal(size=c))
    emissions = rng.normal(size=(n, c)) * 3
    best, probs = brute_force(emissions, crf)
    assert tuple(viterbi(emissions, crf)) == best
    assert np.abs(marginals(emissions, crf) - probs).max() < 1e-10


def test_probability_space_matches_log_space_with_hard_constraints():
    rng = np.random.default_rng(0)
    c, n = 7, 60
    transitions = rng.normal(size=(c, c))
    transitions[0, 2] = transitions[1, 4] = -10000.0  # forbidden moves, as constrained CRFs store them
    crf = CrfParameters(transitions, rng.normal(size=c), rng.normal(size=c))
    emissions = rng.normal(size=(n, c)) * 20
    assert np.abs(marginals(emissions, crf) - _marginals_log_space(emissions, crf)).max() < 1e-9
    assert np.allclose(marginals(emissions, crf).sum(axis=1), 1.0)


def test_a_window_whose_probabilities_underflow_is_computed_in_log_space():
    """Two tags that never follow each other, and emissions that switch from one to the other: every path has a
    probability far below a double's range, so the probability-space pass fails and the log-space one answers."""
    c = 3
    transitions = np.full((c, c), -700.0)
    np.fill_diagonal(transitions, 0.0)
    crf = CrfParameters(transitions, np.zeros(c), np.zeros(c))
    emissions = np.full((10, c), -800.0)
    emissions[:5, 0] = emissions[5:, 1] = 0.0
    probs = marginals(emissions, crf)
    assert np.isfinite(probs).all() and np.allclose(probs, _marginals_log_space(emissions, crf), rtol=0, atol=1e-12)
    assert viterbi(emissions, crf).tolist() == [0] * 5 + [1] * 5 and probs.argmax(axis=1).tolist() == [0] * 5 + [1] * 5


def test_viterbi_and_marginals_take_float32_emissions_and_empty_windows():
    rng = np.random.default_rng(1)
    crf = CrfParameters(rng.normal(size=(4, 4)), rng.normal(size=4), rng.normal(size=4))
    emissions = rng.normal(size=(6, 4)).astype(np.float32)
    assert tuple(viterbi(emissions, crf)) == brute_force(emissions.astype(np.float64), crf)[0]
    assert viterbi(np.zeros((0, 4), np.float32), crf).shape == (0,)
    assert marginals(np.zeros((0, 4), np.float32), crf).shape == (0, 4)
