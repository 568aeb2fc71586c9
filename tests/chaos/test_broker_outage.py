"""Broker outage, quick mode: stop and restart under load (chaos/scenarios/broker_outage.py)."""

from __future__ import annotations

import pytest

from chaos.__main__ import run_scenario

pytestmark = pytest.mark.e2e


def test_broker_outage_quick() -> None:
    outcome = run_scenario("broker_outage", quick=True)
    assert outcome.passed, outcome.as_dict()
    assert outcome.lost == 0 and outcome.duplicated == 0
    assert outcome.acknowledged > 0 and outcome.counted == outcome.acknowledged
    during = outcome.figures["outage_requests_by_status"]
    assert during.get("503", 0) > 0 and "202" not in during  # the outage was real, never 202
    assert outcome.figures["outage_503_with_retry_after"] == during["503"]
    assert outcome.figures["partitions_after_restart"] == 6
    assert outcome.recover_s is not None
