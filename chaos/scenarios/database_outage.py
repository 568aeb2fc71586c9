"""Database outage during consumption: PostgreSQL stops under load and comes back.

The whole pipeline runs on a private PostgreSQL cluster of the scenario's own
(``chaos.postgres.PrivateCluster``: the shared cluster on :5432 is never touched), so the
outage is real: the server is stopped in ``immediate`` mode (a crash: every connection cut,
recovery from the WAL at the next start), new connections are refused, then it starts again
on the same port after 6 s (quick) or 45 s (full, longer than the worker's longest back-off
of 30 s). Nothing is told to the services. The load keeps posting through ingest (which needs
the database only for key lookups, cached for 5 s: past that it answers 503 and the client
retries) and the dashboard's reports are read throughout.

Pass: the worker pauses and resumes by itself (no service exits); every event acknowledged
counted exactly once, reports to the cent; no 500 from ingest; every report read the API
fails while the database is away is a 503 (no 500, no connection reset). ``recover_s``: from the
database's restart to the first event stored after it.
"""

from __future__ import annotations

import time
from pathlib import Path

from chaos.common import settle_and_reconcile, traffic_checks
from chaos.ledger import Ledger
from chaos.observe import ProgressWatch, ReportReader
from chaos.pipeline import Pipeline
from chaos.postgres import PrivateCluster
from chaos.result import Outcome
from chaos.traffic import Attempt, Traffic

RATE = 300


def run(*, quick: bool, workdir: Path) -> Outcome:
    outcome = Outcome("database_outage")
    down_s = 6.0 if quick else 45.0
    ledger = Ledger()
    cluster = PrivateCluster()
    try:
        began = time.monotonic()
        cluster.create()
        url = cluster.database("closedloop_chaos")
        outcome.figures["private_cluster_ready_s"] = round(time.monotonic() - began, 1)
        with Pipeline(workdir, workers=2, database_url=url) as pipe:
            outcome.figures["pipeline_start_s"] = pipe.start_s
            progress = ProgressWatch(lambda: ledger.acknowledged_count, pipe.stored)
            reader = ReportReader(pipe.api_url, pipe.key, pause_s=0.5)
            with progress, reader, Traffic(pipe.ingest_url, pipe.key, ledger, rate=RATE) as load:
                time.sleep(5.0)
                cluster.stop(mode="immediate")
                down_at = time.monotonic()
                time.sleep(down_s)
                cluster.start()
                up_at = time.monotonic()
                resumed = _resumed(pipe, timeout_s=90.0)
                time.sleep(5.0)
            settle_and_reconcile(outcome, pipe, ledger, timeout_s=240 if quick else 900)
            traffic_checks(outcome, load)
    finally:
        cluster.destroy()
    outcome.recover_s = None if resumed is None else round(resumed - up_at, 1)
    outcome.check("worker_resumed", resumed is not None, "nothing new stored after the restart")
    outcome.figures["outage_s"] = round(up_at - down_at, 1)
    outcome.figures["longest_stall_s"] = round(progress.longest_stall_s, 1)
    outcome.figures["report_failures_by_kind"] = kinds = _kinds(reader.failures)
    bad = {k: n for k, n in kinds.items() if not k.endswith(": 503")}
    outcome.check("api_503_while_down", not bad, f"{bad}")  # a 500 or a reset is a bug
    _ingest_answers(outcome, load.attempts(), down_at=down_at, up_at=up_at)
    return outcome


def _resumed(pipe: Pipeline, *, timeout_s: float) -> float | None:
    """The moment the stored count first grows after the first count read once the database
    is back (nothing can be stored while it is away)."""
    deadline, baseline = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            count = pipe.stored()
        except Exception:  # noqa: BLE001 - the server is still recovering: keep asking
            count = None
        if count is not None and baseline is None:
            baseline = count
        elif count is not None and baseline is not None and count > baseline:
            return time.monotonic()
        time.sleep(0.1)
    return None


def _kinds(failures: list[str]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for failure in failures:
        kinds[failure] = kinds.get(failure, 0) + 1
    return kinds


def _ingest_answers(
    outcome: Outcome, attempts: list[Attempt], *, down_at: float, up_at: float
) -> None:
    """What ingest answered while the database was down (503 once its key cache expired)."""
    by_status: dict[str, int] = {}
    for a in attempts:
        if a.started >= down_at and a.ended <= up_at:
            key = str(a.status) if a.status is not None else "no answer"
            by_status[key] = by_status.get(key, 0) + 1
    outcome.figures["outage_requests_by_status"] = by_status
    outcome.check("ingest_no_500_while_down", "500" not in by_status, f"{by_status}")
