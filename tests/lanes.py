"""Test lanes (markers declared in pytest.ini) and the options of the project's own tests.

Every test is in exactly one lane: `unit` (pure code: no tritonserver, no training, no browser; the fast lane),
`server` (starts tritonserver) or `browser` (drives headless Chromium against a server); a test outside those three
is `slow` alone (training without a server). `slow` also goes on any test of the other two that takes more than about
20 s by itself. Collection fails when a test has no lane, two lanes, or a lane that its fixtures contradict (a `unit`
test that asks for a served model, a browser fixture outside the `browser` lane), so that no test slips into the
fast lane, or out of every lane, unnoticed.
"""

from __future__ import annotations

import pytest

LANES = ("unit", "server", "browser")
# Fixtures that start tritonserver (tests/conftest.py, test_reliability.py, test_default_model.py, test_perf_smoke.py)
# or Chromium (test_webui_browser.py).
SERVER_FIXTURES = frozenset({"served", "served_bioes", "supervised", "served_default", "smoke_run"})
BROWSER_FIXTURES = frozenset({"browser_page", "chromium", "playwright_api"})


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files under tests/golden/ from the code under test (then review the diff)")
    parser.addoption("--load-requests", type=int, default=3000,
                     help="requests of test_reliability.py's load test (after its warm-up)")
    parser.addoption("--load-warmup", type=int, default=600, help="warm-up requests of test_reliability.py's load test")


def lane_problem(lanes: list[str], slow: bool, fixtures: set[str]) -> str | None:
    if len(lanes) > 1:
        return f"is in {len(lanes)} lanes {lanes}; a test is in one of {LANES}"
    if not lanes and not slow:
        return f"has no lane: mark it (or its module, with pytestmark) with one of {LANES}, or slow"
    if lanes == ["unit"] and slow:
        return "is marked unit and slow; the unit lane is the fast one"
    if fixtures & BROWSER_FIXTURES and lanes != ["browser"]:
        return f"drives a browser ({sorted(fixtures & BROWSER_FIXTURES)}) but is not in the browser lane"
    if fixtures & SERVER_FIXTURES and not lanes:
        return f"starts tritonserver ({sorted(fixtures & SERVER_FIXTURES)}) but is in neither the server nor the browser lane"
    if fixtures & SERVER_FIXTURES and lanes == ["unit"]:
        return f"is marked unit but starts tritonserver ({sorted(fixtures & SERVER_FIXTURES)})"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    problems = []
    for item in items:
        lanes = [lane for lane in LANES if item.get_closest_marker(lane)]
        problem = lane_problem(lanes, item.get_closest_marker("slow") is not None, set(item.fixturenames))
        if problem:
            problems.append(f"{item.nodeid} {problem}")
    if problems:
        raise pytest.UsageError("test lanes (tests/lanes.py):\n  " + "\n  ".join(problems))
