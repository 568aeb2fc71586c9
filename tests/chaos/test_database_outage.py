"""Database outage, quick mode: PostgreSQL stopped and started under load, on a private
cluster (chaos/scenarios/database_outage.py)."""

from __future__ import annotations

import pytest

from chaos.__main__ import run_scenario

pytestmark = pytest.mark.e2e


def test_database_outage_quick() -> None:
    outcome = run_scenario("database_outage", quick=True)
    assert outcome.passed, outcome.as_dict()
    assert outcome.lost == 0 and outcome.duplicated == 0
    assert outcome.acknowledged > 0 and outcome.counted == outcome.acknowledged
    assert outcome.figures["outage_s"] >= 6
    failures = outcome.figures["report_failures_by_kind"]
    assert failures and all(kind.endswith(": 503") for kind in failures)  # the API saw it
    assert outcome.recover_s is not None
