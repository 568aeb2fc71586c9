"""The reports benchmark runs (small sizes), so it never rots between benchmark runs."""

from __future__ import annotations

import pytest

from tests.e2e.test_bench_smoke import run_quick

pytestmark = pytest.mark.e2e


def test_bench_reports_quick_runs_and_reports_figures() -> None:
    reports = run_quick("reports")["reports"]
    assert reports["roi_p95_ms"] > 0 and reports["compare_p95_ms"] > 0 and reports["api_rss_mb"] > 0
    assert reports["roi_select_p95_ms"] > 0
    assert reports["influence_p95_ms"] > 0
    assert reports["funnel_p95_ms"] > 0 and reports["sla_p95_ms"] > 0
    assert reports["pipeline_p95_ms"] > 0
    for endpoint in ("roi", "compare", "roi_select", "influence", "pipeline", "sla", "funnel"):
        assert reports[f"{endpoint}_live_p95_ms"] > 0
    assert reports["live_applied_events_per_s"] > 0  # real workers applied the live stream
