"""Ingest crashes: the ingest process is SIGKILLed under load, again and again, and started
again after a moment (as a supervisor would).

Four senders post batches of 200 events concurrently; every other kill waits for a request to
be in flight, so it is cut off (no answer), and requests sent while the process is down are
refused at the TCP level. The client, like a CRM provider, sends the same batch again (same
event ids) until it gets 202. A cut-off request may have been published before the process died: the
ledger counts it whether or not the event arrives (``counted_unacknowledged``).

Pass: every event that got 202 is counted, nothing counted twice, reports to the cent; every
batch acknowledged in the end; the kills cut requests off and refused others. ``recover_s``
is the longest time from a restart to the next 202.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from chaos.common import settle_and_reconcile, traffic_checks
from chaos.ledger import Ledger
from chaos.pipeline import Pipeline
from chaos.result import Outcome
from chaos.traffic import Attempt, Traffic

RATE = 400
SUPERVISOR_DELAY_S = 0.5  # between the crash and the restart


def run(*, quick: bool, workdir: Path) -> Outcome:
    outcome = Outcome("ingest_crash")
    kills, gap = (3, (2.0, 4.0)) if quick else (10, (3.0, 10.0))
    rng = random.Random()  # noqa: S311 - fault timing, not secrecy
    ledger = Ledger()
    moments: list[tuple[float, float]] = []  # (killed at, restarted at), monotonic
    with Pipeline(workdir, workers=1) as pipe:
        outcome.figures["pipeline_start_s"] = pipe.start_s
        with Traffic(pipe.ingest_url, pipe.key, ledger, rate=RATE, batch=200, senders=4) as load:
            time.sleep(3.0)
            for n in range(kills):
                time.sleep(rng.uniform(*gap))
                if n % 2 == 0:
                    _wait_in_flight(load)
                killed = time.monotonic()
                pipe.stop_ingest(kill=True)
                time.sleep(SUPERVISOR_DELAY_S)
                restarted = time.monotonic()
                pipe.start_ingest()
                moments.append((killed, restarted))
            time.sleep(3.0)  # the load flows again after the last restart
        settle_and_reconcile(outcome, pipe, ledger, timeout_s=240 if quick else 900)
        traffic_checks(outcome, load)
    _recovery(outcome, load.attempts(), moments)
    return outcome


def _wait_in_flight(load: Traffic, *, timeout_s: float = 3.0) -> None:
    """Return as soon as a request is waiting for its answer (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not load.in_flight() and time.monotonic() < deadline:
        time.sleep(0.001)


def _recovery(
    outcome: Outcome, attempts: list[Attempt], moments: list[tuple[float, float]]
) -> None:
    """Figures of the kills: cut-off requests, refusals while down, restart → next 202."""
    cut_off = sum(
        1
        for a in attempts
        if a.status is None and any(a.started < k <= a.ended for k, _ in moments)
    )
    unanswered = sum(1 for a in attempts if a.status is None)
    to_202 = []
    for _, restarted in moments:
        firsts = [a.ended for a in attempts if a.status == 202 and a.started >= restarted]
        to_202.append(None if not firsts else round(min(firsts) - restarted, 1))
    outcome.figures["kills"] = len(moments)
    outcome.figures["requests_cut_off"] = cut_off
    outcome.figures["requests_unanswered"] = unanswered
    outcome.figures["restart_to_first_202_s"] = to_202
    known = [t for t in to_202 if t is not None]
    outcome.recover_s = max(known) if known else None
    outcome.check("kills_left_requests_unanswered", unanswered > 0)
    outcome.check("a_request_was_cut_off", cut_off > 0)
    outcome.check("ingest_recovered_after_every_kill", len(known) == len(moments))
