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
    assert figures["fit"]["ours_markov_s"] > 0 and figures["fit"]["ours_shapley_s"] > 0
