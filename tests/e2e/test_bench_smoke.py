"""The benchmark scripts run (small sizes), so they never rot between benchmark runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.e2e


def test_bench_quick_runs_and_reports_figures() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = {
        name: json.loads(body)
        for name, body in re.findall(r"^(\w+) (\{.*?^\})", done.stdout, flags=re.S | re.M)
    }
    assert figures["ingest"]["ingest_events_per_s"] > 0
    assert figures["ingest"]["raw_producer_events_per_s"] > 0
    assert figures["worker"]["worker_events_per_s"] > 0
    assert figures["worker"]["credit_rows"] > 0
    worker_runs = figures["worker"]["results"]
    assert [r["workers"] for r in worker_runs] == [1, 2]
    for r in worker_runs:
        assert r["events_per_s"] > 0 and r["cpu_s"]["worker"] > 0 and r["cpu_s"]["postgres"] > 0
        assert r["queues_drained_s"] >= r["all_offsets_in_db_s"] >= r["start_to_first_commit_s"] > 0
    assert figures["fit"]["ours_markov_s"] > 0 and figures["fit"]["ours_shapley_s"] > 0
    webhooks = figures["webhooks"]
    assert webhooks["webhook_requests_per_s"] > 0 and webhooks["noop_requests_per_s"] > 0
    assert webhooks["ratio"] > 0
    assert webhooks["ingest_memory"]["hwm_mib"] > 0
    freshness = figures["freshness"]
    assert freshness["freshness_all_probes"]["timeouts"] == 0
    assert 0 < freshness["freshness_p50_ms"] <= freshness["freshness_p99_ms"]
    assert freshness["background_events_posted"] > 0
    assert freshness["ingest_memory"]["hwm_mib"] > 0 and freshness["worker_memory"]["hwm_mib"] > 0
    assert list(freshness["by_workers"]) == ["1"]
    reports = figures["reports"]
    assert reports["roi_p95_ms"] > 0 and reports["compare_p95_ms"] > 0 and reports["api_rss_mb"] > 0
    assert reports["roi_select_p95_ms"] > 0
    assert reports["influence_p95_ms"] > 0
    assert reports["funnel_p95_ms"] > 0 and reports["sla_p95_ms"] > 0
    assert reports["pipeline_p95_ms"] > 0
    for endpoint in ("roi", "compare", "roi_select", "influence", "pipeline", "sla", "funnel"):
        assert reports[f"{endpoint}_live_p95_ms"] > 0
    assert reports["live_applied_events_per_s"] > 0  # real workers applied the live stream
    recompute = figures["recompute"]
    assert recompute["ours_s"] > 0 and recompute["anchor_s"] > 0
    assert all(size["agrees_within_rounding"] for size in recompute["sizes"])
