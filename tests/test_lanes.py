"""The lane rule of tests/lanes.py: one lane per test, none that its fixtures contradict."""

from __future__ import annotations

import pytest

from lanes import closest_lanes, lane_problem

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


class Node:
    def __init__(self, marks: list[str], parent=None):
        self.own_markers = [getattr(pytest.mark, name).mark for name in marks]
        self.parent = parent


def test_a_test_marked_itself_leaves_its_modules_lane():
    module = Node(["server"])
    assert closest_lanes(Node(["parametrize"], Node([], module))) == ["server"]
    assert closest_lanes(Node(["unit"], module)) == ["unit"]
    assert closest_lanes(Node(["unit", "server"], module)) == ["server", "unit"]
    assert closest_lanes(Node([], Node([]))) == []
