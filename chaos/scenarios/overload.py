"""Overload: ingest offered far more than it can take, by hundreds of impatient clients.

The pipeline runs as processes (ingest, one worker, API, bundled broker, PostgreSQL). For a
bounded time (quick 12 s, full 2 min) ``CLIENTS`` clients post valid batches as fast as they
are answered (``chaos.overload_load``: three of four on ``POST /v1/events``, one of four on the
signed generic webhook; a refused client retries after 0.2–1 s, ignoring ``Retry-After``).
Then the load stops and the worker drains what was acknowledged.

Pass criterion (every item checked):
- refusals are back-pressure: every answer is 202, or 429/503 WITH ``Retry-After``; no
  timeout (client timeout 10 s), no reset, no refused connection, no other status;
- the load was beyond capacity: at least ``MIN_REFUSED_SHARE`` of the requests were refused;
- the latency of accepted requests stays bounded: p99 under ``ACCEPTED_P99_S``;
- ``/healthz`` answers as a liveness probe needs (never two probes in a row failed, i.e.
  slower than 5 s or an error), and the ingest process is alive afterwards;
- every acknowledged event is stored exactly once by the worker; no event of a refused
  request is stored; nothing else is stored but events of requests whose outcome the client
  could not know (a timeout, itself a failure above); no dead letter.
"""

from __future__ import annotations

import time
from pathlib import Path

from chaos.edge_stack import edge_stack, stored_ids, table_count, wait_stored
from chaos.hostile_control import HealthWatch
from chaos.overload_load import CLIENT_TIMEOUT_S, LoadLedger, percentile_ms, run_load
from chaos.result import Outcome

CLIENTS = {True: 300, False: 500}
SECONDS = {True: 12.0, False: 120.0}
# Events per request, cycled; quick mode keeps the volume small enough to drain in seconds.
SIZES = {True: (1, 2, 5, 10), False: (1, 2, 5, 10, 20)}
ACCEPTED_P99_S = 5.0  # half the client timeout
MIN_REFUSED_SHARE = 0.2
DRAIN_TIMEOUT_S = {True: 60.0, False: 600.0}


def run(*, quick: bool, workdir: Path) -> Outcome:
    """Run the scenario; see the module docstring for what passes."""
    outcome = Outcome("overload")
    began = time.monotonic()
    with edge_stack(workdir) as stack:
        ready = time.monotonic()
        pid = stack.procs["ingest"].pid
        with HealthWatch(stack.ingest_url, pid) as health:
            time.sleep(1.0)
            started = time.monotonic()
            ledger = run_load(
                stack.ingest_url,
                stack.key,
                clients=CLIENTS[quick],
                seconds=SECONDS[quick],
                sizes=SIZES[quick],
            )
            load_s = time.monotonic() - started
        alive = stack.alive()
        stored, drain_s = wait_stored(
            stack.engine, ledger.acknowledged, timeout_s=DRAIN_TIMEOUT_S[quick]
        )
        rows = table_count(stack.engine, "events")
        dead_letters = table_count(stack.engine, "dead_letters")
        refused_stored = len(stored_ids(stack.engine, ledger.refused))
        unknown_stored = len(stored_ids(stack.engine, ledger.unknown))
    outcome.sent = len(ledger.sent)
    outcome.acknowledged = len(ledger.acknowledged)
    outcome.counted = len(stored)
    outcome.lost = len(ledger.acknowledged - stored)
    # Rows beyond the ledger's acknowledged and unknown-outcome events: refused ones, or any.
    outcome.duplicated = rows - len(stored) - unknown_stored
    outcome.check(
        "nothing_refused_stored", refused_stored == 0, f"{refused_stored} refused events stored"
    )
    _judge(outcome, ledger, health, alive, dead_letters)
    rss = health.rss_kib or [0]
    outcome.figures.update(
        pipeline_start_s=round(ready - began, 1),
        clients=CLIENTS[quick],
        load_s=round(load_s, 1),
        batch_sizes=list(SIZES[quick]),
        requests=ledger.requests,
        statuses=dict(sorted(ledger.statuses.items())),
        offered_requests_per_s=round(ledger.requests / load_s, 1),
        accepted_requests_per_s=round(ledger.statuses["202"] / load_s, 1),
        accepted_events_per_s=round(len(ledger.acknowledged) / load_s, 1),
        refused_share=round(_refused_share(ledger), 3),
        accepted_latency_ms={q: percentile_ms(ledger.accepted_s, v) for q, v in _QUANTILES},
        refusal_latency_ms={q: percentile_ms(ledger.refused_s, v) for q, v in _QUANTILES},
        drain_after_load_s=round(drain_s, 1),
        events_rows=rows,
        unknown_outcome_events_stored=unknown_stored,
        dead_letters=dead_letters,
        healthz_probes=health.probes,
        healthz_slowest_ms=round(health.slowest_s * 1000, 1),
        healthz_failed_probes=len(health.failures),
        ingest_rss_kib={"before": rss[0], "peak": max(rss), "after": rss[-1]},
    )
    return outcome


_QUANTILES = (("p50", 0.5), ("p99", 0.99), ("max", 1.0))


def _refused_share(ledger: LoadLedger) -> float:
    refused = ledger.statuses["429"] + ledger.statuses["503"]
    return refused / max(1, ledger.requests)


def _judge(
    outcome: Outcome,
    ledger: LoadLedger,
    health: HealthWatch,
    alive: dict[str, bool],
    dead_letters: int,
) -> None:
    """Record the pass criteria."""
    failures = {k: n for k, n in ledger.statuses.items() if not k.isdigit()}
    outcome.check("no_timeout_reset_or_refused_connection", not failures, f"{failures}")
    outcome.check(
        "refusals_carry_retry_after",
        ledger.refused_without_retry_after == 0,
        f"{ledger.refused_without_retry_after} refusals without Retry-After",
    )
    outcome.check("no_other_status", not ledger.unexpected, "; ".join(ledger.unexpected[:5]))
    share = _refused_share(ledger)
    outcome.check(
        "overload_reached",
        share >= MIN_REFUSED_SHARE,
        f"only {share:.1%} of requests refused: the load did not exceed capacity",
    )
    p99 = percentile_ms(ledger.accepted_s, 0.99)
    outcome.check(
        "accepted_latency_bounded",
        p99 is not None and p99 < ACCEPTED_P99_S * 1000,
        f"accepted p99 {p99} ms (bound {ACCEPTED_P99_S * 1000:.0f} ms; "
        f"client timeout {CLIENT_TIMEOUT_S:.0f} s)",
    )
    outcome.check(
        "healthz_answered",
        health.alive,
        f"{health.most_in_a_row} probes in a row failed: " + "; ".join(health.failures[:5]),
    )
    outcome.check("ingest_alive", alive.get("ingest", False), f"processes alive: {alive}")
    outcome.check("no_dead_letters", dead_letters == 0, f"{dead_letters} dead letters")
