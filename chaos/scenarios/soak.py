"""Soak: steady mixed CRM traffic for a long time, the dashboard's reports read throughout.

Two workers, ingest and the API run as processes; the load generator posts simulated CRM
stories at a steady rate (full: 15 minutes, quick: 20 s) while a reader loops over the
dashboard's reports (ROI, compare, funnel, influence, pipeline) and a sampler records every
process's memory. Then the pipeline settles and the ledger checks it.

Pass: nothing acknowledged lost, nothing counted twice, the reports equal the ledger's to the
cent; every request of the load acknowledged (no refusal, no give-up); every report read
answered 200; no service exited; memory flat in full mode (each process's last-third median
RSS within max(32 MiB, 10 %) of its middle-third median; quick runs are too short for the
worker's event cache to fill, so they only bound RSS under 1 GiB).
"""

from __future__ import annotations

import time
from pathlib import Path

from chaos.common import settle_and_reconcile, traffic_checks
from chaos.ledger import Ledger
from chaos.observe import MemorySampler, ReportReader, flat, growth
from chaos.pipeline import Pipeline
from chaos.result import Outcome
from chaos.traffic import Traffic

RATE = 300  # events/s: well inside one worker's capacity on 2 shared cores
FLAT_BOUND_KIB, FLAT_BOUND_SHARE = 32 * 1024, 0.10
QUICK_RSS_CEILING_KIB = 1024 * 1024


def run(*, quick: bool, workdir: Path) -> Outcome:
    outcome = Outcome("soak")
    duration_s = 20.0 if quick else 900.0
    ledger = Ledger()
    with Pipeline(workdir, workers=2) as pipe:
        outcome.figures["pipeline_start_s"] = pipe.start_s
        memory = MemorySampler(pipe.pids, every_s=1.0 if quick else 5.0)
        with (
            memory,
            ReportReader(pipe.api_url, pipe.key) as reader,
            Traffic(pipe.ingest_url, pipe.key, ledger, rate=RATE) as traffic,
        ):
            backlog = _steady(pipe, ledger, duration_s)
        outcome.figures["backlog_max_events"] = backlog
        settle_and_reconcile(outcome, pipe, ledger, timeout_s=240 if quick else 1800)
        traffic_checks(outcome, traffic)
        outcome.figures.update(reader.figures())
        outcome.check("reports_answered", not reader.failures, "; ".join(reader.failures[:5]))
        outcome.check("reports_read", outcome.figures["report_reads"] > 0)
    _memory(outcome, memory, quick=quick)
    return outcome


def _steady(pipe: Pipeline, ledger: Ledger, duration_s: float) -> int:
    """Let the load run for ``duration_s``; return the largest backlog (acknowledged − stored)."""
    end, worst = time.monotonic() + duration_s, 0
    while time.monotonic() < end:
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
        worst = max(worst, ledger.acknowledged_count - pipe.stored())
    return worst


def _memory(outcome: Outcome, memory: MemorySampler, *, quick: bool) -> None:
    for name in ("ingest", "api", "worker0", "worker1"):
        samples = [rss for _, rss in memory.samples.get(name, [])]
        if len(samples) < 3:
            outcome.check(f"memory_sampled_{name}", False, "fewer than 3 samples")
            continue
        middle, last = growth(samples)
        outcome.figures[f"rss_mib_{name}"] = {
            "first": round(samples[0] / 1024),
            "middle_median": round(middle / 1024),
            "last_median": round(last / 1024),
            "max": round(max(samples) / 1024),
        }
        if quick:
            outcome.check(f"memory_bounded_{name}", max(samples) < QUICK_RSS_CEILING_KIB)
        else:
            ok = flat(samples, bound_kib=FLAT_BOUND_KIB, bound_share=FLAT_BOUND_SHARE)
            outcome.check(f"memory_flat_{name}", ok, f"{middle} KiB -> {last} KiB")
