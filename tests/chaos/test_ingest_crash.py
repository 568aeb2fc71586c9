"""Ingest crashes, quick mode: SIGKILL under load, restart (chaos/scenarios/ingest_crash.py)."""

from __future__ import annotations

import pytest

from chaos.__main__ import run_scenario

pytestmark = pytest.mark.e2e


def test_ingest_crash_quick() -> None:
    outcome = run_scenario("ingest_crash", quick=True)
    assert outcome.passed, outcome.as_dict()
    assert outcome.lost == 0 and outcome.duplicated == 0
    assert outcome.acknowledged > 0 and outcome.counted == outcome.acknowledged
    assert outcome.figures["kills"] == 3
    assert outcome.figures["requests_cut_off"] > 0  # a kill really landed mid-request
    assert outcome.figures["requests_unanswered"] > 0
    assert outcome.recover_s is not None
