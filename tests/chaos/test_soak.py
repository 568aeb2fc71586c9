"""Soak, quick mode: steady traffic and report reads (chaos/scenarios/soak.py)."""

from __future__ import annotations

import pytest

from chaos.__main__ import run_scenario

pytestmark = pytest.mark.e2e


def test_soak_quick() -> None:
    outcome = run_scenario("soak", quick=True)
    assert outcome.passed, outcome.as_dict()
    assert outcome.lost == 0 and outcome.duplicated == 0
    assert outcome.acknowledged > 0 and outcome.counted == outcome.acknowledged
    assert outcome.figures["report_figures_compared"] > 100
    assert outcome.figures["report_reads"] > 0 and outcome.figures["report_failures"] == 0
    assert {"ingest", "api", "worker0", "worker1"} <= {
        k.removeprefix("rss_mib_") for k in outcome.figures if k.startswith("rss_mib_")
    }
