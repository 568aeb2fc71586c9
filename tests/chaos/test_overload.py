"""The overload scenario in quick mode: back-pressure, bounded latency, nothing lost."""

from __future__ import annotations

import pytest

from chaos.__main__ import run_scenario
from chaos.scenarios.overload import ACCEPTED_P99_S

pytestmark = pytest.mark.e2e


def test_overload_quick() -> None:
    outcome = run_scenario("overload", quick=True)
    figures = outcome.figures
    assert outcome.passed, (outcome.checks, outcome.notes)
    statuses = figures["statuses"]
    assert set(statuses) <= {"202", "429", "503"}, statuses  # no timeout, reset or 5xx
    assert statuses["202"] > 0 and statuses.get("503", 0) + statuses.get("429", 0) > 0
    assert figures["accepted_latency_ms"]["p99"] < ACCEPTED_P99_S * 1000
    # Every acknowledged event stored exactly once, and no event of a refused request.
    assert outcome.acknowledged == outcome.counted > 0
    assert figures["events_rows"] == outcome.counted and figures["dead_letters"] == 0
    assert outcome.lost == 0 and outcome.duplicated == 0
