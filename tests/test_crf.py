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


def test_viterbi_and_marginals_take_float32_emissions_and_empty_windows():
    rng = np.random.default_rng(1)
    crf = CrfParameters(rng.normal(size=(4, 4)), rng.normal(size=4), rng.normal(size=4))
    emissions = rng.normal(size=(6, 4)).astype(np.float32)
    assert tuple(viterbi(emissions, crf)) == brute_force(emissions.astype(np.float64), crf)[0]
    assert viterbi(np.zeros((0, 4), np.float32), crf).shape == (0,)
    assert marginals(np.zeros((0, 4), np.float32), crf).shape == (0, 4)


def test_a_batch_of_windows_of_several_lengths_tags_each_as_alone():
    """Rows padded to the longest, with scores past their length that would change their paths if read."""
    rng = np.random.default_rng(2)
    c, lengths = 5, [7, 0, 1, 12, 3, 7]
    crf = CrfParameters(rng.normal(size=(c, c)) * 2, rng.normal(size=c), rng.normal(size=c))
    batch = rng.normal(size=(len(lengths), max(lengths), c)) * 3
    batch[0, 7:] = 50.0
    paths, probs = viterbi(batch, crf, lengths), marginals(batch, crf, lengths)
    assert paths.shape == (len(lengths), 12) and probs.shape == (len(lengths), 12, c)
    for row, n in enumerate(lengths):
        assert paths[row, :n].tolist() == viterbi(batch[row, :n], crf).tolist()
        assert np.allclose(probs[row, :n], marginals(batch[row, :n], crf), rtol=0, atol=1e-12)
        if 0 < n <= 7:
            best, expected = brute_force(batch[row, :n], crf)
            assert tuple(paths[row, :n]) == best
            assert np.abs(probs[row, :n] - expected).max() < 1e-10
