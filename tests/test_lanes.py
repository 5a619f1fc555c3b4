"""The lane rule of tests/lanes.py: one lane per test, none that its fixtures contradict."""

from __future__ import annotations

import pytest

from lanes import lane_problem

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("lanes, slow, fixtures", [
    (["unit"], False, {"tmp_path"}),
    (["server"], False, {"served"}),
    (["server"], True, {"supervised"}),
    (["browser"], True, {"served", "browser_page"}),
    ([], True, {"tmp_path"}),  # training without a server
])
def test_a_test_in_one_lane_that_fits_its_fixtures_passes(lanes, slow, fixtures):
    assert lane_problem(lanes, slow, fixtures) is None


@pytest.mark.parametrize("lanes, slow, fixtures, problem", [
    ([], False, set(), "has no lane"),
    (["unit", "server"], False, set(), "in 2 lanes"),
    (["unit"], True, set(), "unit and slow"),
    (["unit"], False, {"served"}, "marked unit but starts tritonserver"),
    ([], True, {"served_bioes"}, "neither the server nor the browser lane"),
    (["server"], False, {"browser_page"}, "not in the browser lane"),
])
def test_a_test_without_a_lane_or_against_its_fixtures_is_refused(lanes, slow, fixtures, problem):
    assert problem in lane_problem(lanes, slow, fixtures)
