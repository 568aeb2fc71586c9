"""Worker crashes, quick mode: SIGKILLs, a rolling restart (chaos/scenarios/worker_crashes.py)."""

from __future__ import annotations

import pytest

from chaos.__main__ import run_scenario

pytestmark = pytest.mark.e2e


def test_worker_crashes_quick() -> None:
    outcome = run_scenario("worker_crashes", quick=True)
    assert outcome.passed, outcome.as_dict()
    assert outcome.lost == 0 and outcome.duplicated == 0
    assert outcome.acknowledged > 0 and outcome.counted == outcome.acknowledged
    assert outcome.figures["kills"] == 5
    assert outcome.figures["graceful_exit_codes"] == [0, 0, 0]  # each SIGTERM left cleanly
    assert outcome.recover_s is not None
