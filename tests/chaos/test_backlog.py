"""Backlog (issue 14, scenario 7) in quick mode: ~20,000 events published with no worker
running are drained by one; the API's ``/metrics`` lag starts at the backlog, never rises,
reaches 0 at no less than half the worker benchmark's rate measured in the same run, and every
event is stored once with the reference's credits."""

from __future__ import annotations

import pytest

from chaos.__main__ import run_scenario

pytestmark = pytest.mark.e2e


def test_a_backlog_drains_and_metrics_show_the_lag_falling_to_0() -> None:
    outcome = run_scenario("backlog", quick=True)
    assert outcome.passed, outcome.as_dict()
    assert outcome.acknowledged == outcome.sent >= 20_000
    assert outcome.counted == outcome.acknowledged
    figures = outcome.figures
    series = figures["lag_series"]
    assert series[0][1] == outcome.acknowledged  # before the worker: the whole backlog
    assert series[-1][1] == 0
    assert figures["drain_share_of_anchor"] >= 0.5
    assert outcome.recover_s is not None and outcome.recover_s > 0
