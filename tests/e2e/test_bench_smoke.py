"""The benchmark scripts run (small sizes), so they never rot between benchmark runs.

Split over two files (the reports benchmark in ``test_bench_smoke_reports.py``) so that the
suite's processes can run them at the same time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.e2e


def run_quick(*names: str) -> dict[str, Any]:
    """Run ``python -m bench --quick`` for ``names``; return each benchmark's printed figures."""
    only = [arg for name in names for arg in ("--only", name)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *only],
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
    assert set(figures) == set(names), done.stdout[-2000:]
    return figures


def test_bench_quick_runs_and_reports_figures() -> None:
    figures = run_quick("ingest", "webhooks", "worker", "freshness", "fit", "recompute")
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
    # A smoke run checks that the bench measures, not how fast: beside the rest of the suite
    # the worker can fall behind the background load, and a probe may then wait past the
    # bench's limit, which ends the run. Some probe must have been seen before that.
    probes = freshness["freshness_all_probes"]
    assert probes["probes"] > probes["timeouts"]
    assert 0 < freshness["freshness_p50_ms"] <= freshness["freshness_p99_ms"]
    assert freshness["background_events_posted"] > 0
    assert freshness["ingest_memory"]["hwm_mib"] > 0 and freshness["worker_memory"]["hwm_mib"] > 0
    assert list(freshness["by_workers"]) == ["1"]
    recompute = figures["recompute"]
    assert recompute["ours_s"] > 0 and recompute["anchor_s"] > 0
    assert all(size["agrees_within_rounding"] for size in recompute["sizes"])
