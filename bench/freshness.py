"""Freshness: a won deal accepted by ingest (202) → its revenue in ``GET /v1/reports/roi``.

The whole pipeline runs as processes (ingest, worker, API on PostgreSQL and the bundled
broker) while a background load of simulated CRM events flows through ``POST /v1/events`` at
a steady rate (batches of 100, paced every 0.1 s, each simulated history in ``occurred_at``
order like a live feed; a new history of 20,000 events, with its own ids, every 20 s).
A probe posts one small deal in one request: a touch of its own campaign, ``deal.created`` and
``deal.closed_won``, closing on a day of its own far from the simulated history. From the 202,
it polls the ROI report for that one day (``model=linear``) until the probe campaign shows the
deal's revenue; the latency is the time from the 202 to the answer that shows it (late by at
most one poll interval plus one GET). Probes run one after another, one every ~200 ms.
Full mode runs three rounds of 100 probes on the same pipeline and reports the median of each
round's percentiles; it also reports the memory of the ingest, (first) worker and API
processes and the load average before and after.

Each worker count (``--workers 1,3``; default 1 and 3, quick: 1) runs on a pipeline of its
own (fresh broker and database); with N workers, N ``closedloop worker`` processes share the
consumer group (6 partitions). The batch figures (``worker_batch_*``) are then every worker's
batches interleaved: the gap between two is no longer one worker's cycle.
"""

from __future__ import annotations

import itertools
import math
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bench.common import make_key, worker_processes
from bench.cpu import load_average
from bench.load import BackgroundLoad, ingest_sender
from bench.webhooks import MemoryWatch
from services.core.broker import free_port
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import EventRow
from tests.support.infra import postgres_database, running_broker
from tests.support.processes import services

BACKGROUND_RATE = 1000  # events/s
PROBE_EVERY_S = 0.2
POLL_EVERY_S = 0.02
PROBE_TIMEOUT_S = 10.0
FIRST_PROBE_DAY = date(2031, 1, 1)  # far from the simulated history: one probe per day


def probe_events(tag: str, day: date, cents: int) -> list[dict[str, Any]]:
    """Return one probe deal: a touch of its own campaign, created and won on ``day``."""
    at = f"{day.isoformat()}T12:00:00Z"
    touched = f"{(day - timedelta(days=1)).isoformat()}T12:00:00Z"
    amount = f"{cents // 100}.{cents % 100:02d}"
    return [
        {
            "event_id": f"{tag}-touch",
            "type": "touch",
            "occurred_at": touched,
            "campaign_id": f"{tag}-campaign",
            "account_id": f"{tag}-account",
            "touch_type": "form_fill",
            "lead_created": True,
        },
        {
            "event_id": f"{tag}-created",
            "type": "deal.created",
            "occurred_at": touched,
            "deal_id": f"{tag}-deal",
            "account_id": f"{tag}-account",
            "amount": amount,
            "currency": "USD",
        },
        {
            "event_id": f"{tag}-won",
            "type": "deal.closed_won",
            "occurred_at": at,
            "deal_id": f"{tag}-deal",
            "amount": amount,
            "currency": "USD",
        },
    ]


@dataclass
class Probe:
    """One probe: when ingest accepted it (wall clock) and how long until the report showed it."""

    tag: str
    accepted_at: float
    latency_s: float | None  # None: not visible within PROBE_TIMEOUT_S


def probe(ingest: httpx.Client, api: httpx.Client, *, tag: str, day: date, cents: int) -> Probe:
    """Post one probe deal; measure from its 202 to the ROI answer that shows it."""
    response = ingest.post(
        "/v1/events", content=orjson.dumps({"events": probe_events(tag, day, cents)})
    )
    if response.status_code != 202:
        raise RuntimeError(f"probe refused: {response.status_code} {response.text[:200]}")
    accepted, accepted_at = time.perf_counter(), time.time()
    params = {
        "model": "linear",
        "from": day.isoformat(),
        "to": (day + timedelta(days=1)).isoformat(),
    }
    revenue = f"{cents // 100}.{cents % 100:02d}"
    while True:
        rows = api.get("/v1/reports/roi", params=params).json().get("rows", [])
        seen = any(
            r.get("campaign_id") == f"{tag}-campaign" and r.get("revenue") == revenue for r in rows
        )
        elapsed = time.perf_counter() - accepted
        if seen:
            return Probe(tag, accepted_at, elapsed)
        if elapsed > PROBE_TIMEOUT_S:
            return Probe(tag, accepted_at, None)
        time.sleep(POLL_EVERY_S)


def percentiles(latencies: list[float]) -> dict[str, float]:
    """Return p50, p99 and max in milliseconds (nearest rank)."""
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"p50_ms": rank(0.50) * 1000, "p99_ms": rank(0.99) * 1000, "max_ms": ordered[-1] * 1000}


def summary(probes: list[Probe]) -> dict[str, Any]:
    """Percentiles of the probes; a probe that never showed counts as ``PROBE_TIMEOUT_S``."""
    return {
        **percentiles([p.latency_s or PROBE_TIMEOUT_S for p in probes]),
        "probes": len(probes),
        "timeouts": sum(1 for p in probes if p.latency_s is None),
    }


def breakdown(sessions: sessionmaker[Session], probes: list[Probe]) -> dict[str, float]:
    """Split the median latency at the moment the worker polled the won event.

    ``events.stored_at`` is the worker's clock when it polled the batch holding the event
    (same machine, same clock): before it, the broker, the consumer's fetch and the wait for
    the batch in progress; after it, the batch's transaction, its commit and the report.
    """
    seen = [p for p in probes if p.latency_s is not None]
    if not seen:
        return {}
    with sessions() as session:
        query = select(EventRow.event_id, EventRow.stored_at).where(
            EventRow.event_id.in_([f"{p.tag}-won" for p in seen])
        )
        stored = {event_id: at for event_id, at in session.execute(query).all()}
    to_worker, after = [], []
    for p in seen:
        polled_at = stored[f"{p.tag}-won"].timestamp()
        to_worker.append(polled_at - p.accepted_at)
        after.append(p.accepted_at + (p.latency_s or 0.0) - polled_at)
    return {
        "accepted_to_polled_p50_ms": statistics.median(to_worker) * 1000,
        "polled_to_visible_p50_ms": statistics.median(after) * 1000,
    }


def batches(sessions: sessionmaker[Session], since: float, until: float) -> dict[str, float]:
    """Return the worker's batches between two wall-clock times: events each, seconds apart.

    A batch's events share one ``stored_at`` (the worker's clock at the poll), so the gap
    between consecutive batches is one poll-process-commit cycle while the worker is busy.
    """
    with sessions() as session:
        query = (
            select(EventRow.stored_at, func.count())
            .group_by(EventRow.stored_at)
            .order_by(EventRow.stored_at)
        )
        rows = [
            (at.timestamp(), n)
            for at, n in session.execute(query).all()
            if since <= at.timestamp() <= until
        ]
    if len(rows) < 2:
        return {}
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(rows)]
    return {
        "worker_batches": len(rows),
        "worker_batch_events_p50": statistics.median(n for _, n in rows),
        "worker_batch_cycle_p50_ms": statistics.median(gaps) * 1000,
        "worker_batch_cycle_max_ms": max(gaps) * 1000,
    }


def stored_events(sessions: sessionmaker[Session]) -> int:
    """Return how many distinct events the worker has stored."""
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(EventRow)) or 0


def _probe_rounds(
    ingest: httpx.Client,
    api: httpx.Client,
    sessions: sessionmaker[Session],
    load: BackgroundLoad,
    *,
    tag: str,
    rounds: int,
    per_round: int,
) -> tuple[Probe, list[list[Probe]], list[int]]:
    """Warm up, then probe ``rounds`` × ``per_round``; return the probes and the backlogs."""
    # Warm-up: the workers join their group and catch up with the load started before.
    day = FIRST_PROBE_DAY
    warm_up = probe(ingest, api, tag=f"warm-{tag}", day=day, cents=100)
    if warm_up.latency_s is None:
        raise RuntimeError("the warm-up probe never showed up in the ROI report")
    done: list[list[Probe]] = []
    backlog: list[int] = []  # events accepted but not yet stored, after each round
    for r in range(rounds):
        done.append([])
        for i in range(per_round):
            started = time.perf_counter()
            day += timedelta(days=1)
            done[-1].append(probe(ingest, api, tag=f"p{r}-{i}-{tag}", day=day, cents=10_000 + i))
            if done[-1][-1].latency_s is None:
                break  # the workers are behind by more than the timeout: stop here
            time.sleep(max(0.0, PROBE_EVERY_S - (time.perf_counter() - started)))
        probed = 3 * (1 + sum(len(d) for d in done))
        backlog.append(load.sent + probed - stored_events(sessions))
        if done[-1][-1].latency_s is None:
            break
    return warm_up, done, backlog


def measure(workers: int, *, rounds: int, per_round: int) -> dict[str, Any]:
    """Run the pipeline with ``workers`` workers under the background load; probe freshness."""
    load_before = load_average()
    with (
        running_broker() as bootstrap,
        postgres_database("closedloop_bench_fresh") as db,
        tempfile.TemporaryDirectory() as tmp,
    ):
        key = make_key(db, ["ingest", "read"])
        ingest_port, api_port = free_port(), free_port()
        tag = uuid.uuid4().hex[:6]
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLOSEDLOOP_EVENTS_TOPIC": f"fresh-{tag}",
            "CLOSEDLOOP_DEAD_LETTER_TOPIC": f"fresh-dead-{tag}",
            "CLOSEDLOOP_CONSUMER_GROUP": f"fresh-{tag}",
            "CLOSEDLOOP_INGEST_PORT": str(ingest_port),
            "CLOSEDLOOP_API_PORT": str(api_port),
        }
        auth = {"Authorization": f"Bearer {key}"}
        ingest_url = f"http://127.0.0.1:{ingest_port}"
        engine = make_engine(db)
        sessions = make_sessionmaker(engine)
        with (
            services(env, Path(tmp), ingest_port=ingest_port, api_port=api_port) as procs,
            # The first worker is ``services``'s; the others join its consumer group.
            worker_processes(workers - 1, env, Path(tmp), first=2) as more,
            MemoryWatch(procs["ingest"].pid) as ingest_memory,
            MemoryWatch(procs["worker"].pid) as worker_memory,
            MemoryWatch(procs["api"].pid) as api_memory,
            httpx.Client(
                base_url=ingest_url,
                headers={**auth, "Content-Type": "application/json"},
                timeout=30,
            ) as ingest,
            httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=auth, timeout=30) as api,
            BackgroundLoad(ingest_sender(ingest_url, key), rate=BACKGROUND_RATE) as load,
        ):
            warm_up, done, backlog = _probe_rounds(
                ingest, api, sessions, load, tag=tag, rounds=rounds, per_round=per_round
            )
            load_rate, lag = load.rate(), load.behind_s()
            alive = all(p.poll() is None for p in [procs["worker"], *more])
        split = [
            {
                **breakdown(sessions, d),
                **batches(sessions, d[0].accepted_at, d[-1].accepted_at + PROBE_EVERY_S),
            }
            for d in done
        ]
        engine.dispose()
    if load.errors:
        raise RuntimeError(f"ingest refused background batches: {load.errors[:3]}")
    if not alive:
        raise RuntimeError("a worker exited during the freshness run")
    all_probes = [p for d in done for p in d]
    figures = [{**summary(d), **where} for d, where in zip(done, split, strict=True)]
    return {
        "workers": workers,
        "background_events_per_s_target": BACKGROUND_RATE,
        "background_events_per_s": load_rate,
        "background_events_posted": load.sent,
        "background_behind_schedule_s": lag,
        "worker_backlog_events_after_each_round": backlog,
        "probes_per_round": per_round,
        "rounds": len(done),
        "poll_every_ms": POLL_EVERY_S * 1000,
        "freshness_p50_ms": statistics.median(f["p50_ms"] for f in figures),
        "freshness_p99_ms": statistics.median(f["p99_ms"] for f in figures),
        "freshness_max_ms": max(f["max_ms"] for f in figures),
        "freshness_rounds": figures,
        "freshness_all_probes": summary(all_probes),
        "warm_up_s": warm_up.latency_s,
        "ingest_memory": ingest_memory.figures(),
        "worker_memory": worker_memory.figures(),
        "api_memory": api_memory.figures(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def run(*, quick: bool, workers: list[int] | None = None) -> dict[str, Any]:
    """Measure freshness under background load with each worker count (default 1 and 3).

    Quick mode: one worker, unless ``workers`` says otherwise.

    The first count's figures are also at the top level; every count's under ``by_workers``.
    """
    counts = list(workers or ((1,) if quick else (1, 3)))
    per_round, rounds = (10, 1) if quick else (100, 3)
    by_workers = {n: measure(n, rounds=rounds, per_round=per_round) for n in counts}
    return {**by_workers[counts[0]], "by_workers": {str(n): f for n, f in by_workers.items()}}


def table(result: dict[str, Any]) -> str:
    """Render the freshness per worker count as a Markdown table."""
    lines = [
        "| workers | p50 | p99 | max | probes (timeouts) | 202 → polled p50 | polled → visible "
        "p50 | background ev/s | backlog after each round | load avg before |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, f in result["by_workers"].items():
        every = f["freshness_all_probes"]
        parts = [
            statistics.median(r.get(k, 0.0) for r in f["freshness_rounds"])
            for k in ("accepted_to_polled_p50_ms", "polled_to_visible_p50_ms")
        ]
        lines.append(
            f"| {n} | **{f['freshness_p50_ms']:.0f} ms** | **{f['freshness_p99_ms']:.0f} ms** "
            f"| {f['freshness_max_ms']:.0f} ms | {every['probes']} ({every['timeouts']}) "
            f"| {parts[0]:.0f} ms | {parts[1]:.0f} ms | {f['background_events_per_s']:,.0f} "
            f"| {', '.join(str(b) for b in f['worker_backlog_events_after_each_round'])} "
            f"| {', '.join(str(x) for x in f['load_average_before'])} |"
        )
    return "\n".join(lines)
