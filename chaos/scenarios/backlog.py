"""Slow consumer / backlog: a backlog published while no worker runs is drained, and the API's
``/metrics`` shows the consumer lag falling to 0 at the rate the worker benchmark measures.

The backlog (quick: ~20,000 events, full: ~1,000,000) is a simulated CRM history published
straight to the topic as ingest publishes it (batch records of 1,000-event requests,
``bench.worker.fill_topic``); every request counts as acknowledged once the publisher returned
(the broker acknowledged all its records). The topic is then read back once: how many records
each partition holds and how many events each record carries (``chaos.lag``). The API runs
as a process; with no worker its lag must equal those records. Then the workers start (quick:
1; full: 3, the count the worker benchmark found fastest, BENCHMARKS.md §3) and ``/metrics``
is scraped every second until the lag is 0; at some scrapes the database's stored events are
counted just before and just after, and the events in the lagging records must lie between
what those counts leave (each batch stores its events and its offsets in one transaction).

Anchor: ``bench.worker.measure`` in the same run, just before, with the same worker count on a
smaller history (quick 10,000 events, full 100,000): its rate from the first committed batch
to the last. The drain's rate is taken the same way: events drained from the first scrape
showing a lower lag to the first showing none. Pass: at least ``Size.min_share`` of the
anchor. Quick: 50 %, the margin for a shared 2-core machine whose load changes between the two
measurements. Full: 40 %, because the rate falls as the database grows: §3 measured 1M events
at 0.57x the 100k rate (2 workers, fresh databases), and the margin again.

Exactly once: every published ``event_id`` stored once; every (model, deal) credit sum of the
positional and time-decay models, and every deal's state, equal to the independent reference
(tests/support/reference.py) over the published history.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text

from bench.common import simulated_events, worker_processes
from bench.cpu import load_average
from bench.worker import measure
from chaos.lag import Scrape, TopicRecords, first_scrape, scrape
from chaos.result import Outcome
from services.core.broker import free_port, wait_for_port
from services.core.db.engine import make_engine
from services.core.events import EVENT_LIST_ADAPTER
from services.core.kafka import ensure_topics
from services.core.publisher import Publisher
from services.core.settings import Settings
from tests.support import reference
from tests.support.infra import postgres_database, running_broker
from tests.support.processes import start_service, stop
from tests.support.streams import deal_states, expected_deal_states, reference_for, wait_settled

PARTITIONS = 6
SCRAPE_EVERY_S = 1.05  # past the API's snapshot age (1 s): every scrape a fresh snapshot
REQUEST_EVENTS = 1000


@dataclass(frozen=True)
class Size:
    backlog: int
    anchor: int
    workers: int
    min_share: float
    deadline_s: float
    count_every: int  # scrapes between two database counts (a count(*) costs the workers)


QUICK = Size(backlog=20_000, anchor=10_000, workers=1, min_share=0.5, deadline_s=180, count_every=1)
FULL = Size(
    backlog=1_000_000, anchor=100_000, workers=3, min_share=0.4, deadline_s=3600, count_every=10
)


@dataclass(frozen=True)
class Sample:
    """A scrape, with the stored events counted just before and after it (when counted)."""

    scrape: Scrape
    events_lag: int | None
    stored: tuple[int, int] | None


def run(*, quick: bool, workdir: Path) -> Outcome:
    size = QUICK if quick else FULL
    outcome = Outcome("backlog")
    outcome.figures["load_average_before"] = load_average()
    anchor = measure(
        simulated_events(size.anchor, seed=7), workers=size.workers, deadline_s=size.deadline_s
    )
    events = simulated_events(size.backlog)
    with running_broker() as bootstrap, postgres_database("closedloop_chaos_backlog") as db:
        settings = Settings(
            _env_file=None,
            database_url=db,
            kafka_bootstrap_servers=bootstrap,
            events_topic="chaos.backlog",
            dead_letter_topic="chaos.backlog.dead",
            consumer_group="chaos-backlog",
            topic_partitions=PARTITIONS,
        )
        _publish(outcome, settings, events)
        topic = TopicRecords.read(bootstrap, settings.events_topic, PARTITIONS, timeout_s=300)
        engine = make_engine(db)
        try:
            samples, started, settled_s = _drain(outcome, settings, size, topic, engine, workdir)
            _judge_lag(outcome, size, topic, samples, started, anchor)
            outcome.figures["settled_s"] = settled_s
            outcome.check("settled", settled_s is not None)
            if settled_s is not None:  # else not drained in time: the counts would say nothing
                _count(outcome, engine, events)
                _credits(outcome, engine, events, settings)
        finally:
            engine.dispose()
    outcome.figures["load_average_after"] = load_average()
    return outcome


def _publish(outcome: Outcome, settings: Settings, events: list[dict[str, Any]]) -> None:
    """Publish as ingest does; count what was sent and what the broker acknowledged."""
    ensure_topics(settings)
    publisher = Publisher(settings, client_id="chaos-backlog")
    started = time.monotonic()
    try:
        for start in range(0, len(events), REQUEST_EVENTS):
            items = events[start : start + REQUEST_EVENTS]
            outcome.sent += len(items)
            outcome.acknowledged += publisher.publish(
                EVENT_LIST_ADAPTER.validate_python(items), items=items
            )
    finally:
        publisher.close()
    outcome.figures["publish_events_per_s"] = round(len(events) / (time.monotonic() - started))


def _env(settings: Settings, api_port: int) -> dict[str, str]:
    return {
        "CLOSEDLOOP_DATABASE_URL": settings.database_url,
        "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CLOSEDLOOP_EVENTS_TOPIC": settings.events_topic,
        "CLOSEDLOOP_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "CLOSEDLOOP_CONSUMER_GROUP": settings.consumer_group,
        "CLOSEDLOOP_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CLOSEDLOOP_API_PORT": str(api_port),
    }


@contextlib.contextmanager
def _api(env: dict[str, str], port: int, workdir: Path) -> Iterator[str]:
    proc = start_service("api", env, workdir / "api.log")
    try:
        wait_for_port(port, timeout_s=60)
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        stop(proc)


def _drain(
    outcome: Outcome,
    settings: Settings,
    size: Size,
    topic: TopicRecords,
    engine: Engine,
    workdir: Path,
) -> tuple[list[Sample], float, float | None]:
    """Scrape while the workers drain the backlog; return the samples, their start, settled."""
    port = free_port()
    env = _env(settings, port)
    with _api(env, port, workdir) as url, httpx.Client(timeout=10) as client:
        samples = [_sample(first_scrape(client, url, settings.events_topic), topic, None)]
        with worker_processes(size.workers, env, workdir) as procs:
            started = time.monotonic()
            deadline = started + size.deadline_s
            n = 0
            while samples[-1].events_lag != 0:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    outcome.notes.append(f"lag not 0 after {time.monotonic() - started:.0f} s")
                    return samples, started, None
                time.sleep(SCRAPE_EVERY_S)
                n += 1
                counted = n % size.count_every == 0
                low = _stored(engine) if counted else 0
                got = scrape(client, url, settings.events_topic)
                samples.append(_sample(got, topic, (low, _stored(engine)) if counted else None))
            try:
                wait_settled(engine, timeout_s=size.deadline_s)
                settled = round(time.monotonic() - started, 1)
            except AssertionError as exc:
                outcome.notes.append(f"not settled: {exc}")
                settled = None
    return samples, started, settled


def _sample(got: Scrape, topic: TopicRecords, stored: tuple[int, int] | None) -> Sample:
    lag = None if got.lags is None else topic.events_in_lag(got.lags)
    return Sample(got, lag, stored)


def _stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM events")) or 0)


def _judge_lag(
    outcome: Outcome,
    size: Size,
    topic: TopicRecords,
    samples: list[Sample],
    started: float,
    anchor: dict[str, Any],
) -> None:
    """The lag's pass criteria and figures (see the module docstring)."""
    first, known = samples[0], [s for s in samples if s.events_lag is not None]
    outcome.check(
        "lag_starts_at_backlog",
        first.scrape.lags == topic.records() and first.events_lag == outcome.acknowledged,
        f"first lag {first.scrape.lags} ({first.events_lag} events), "
        f"topic {topic.records()} ({topic.events()} events), acknowledged {outcome.acknowledged}",
    )
    missing = len(samples) - len(known)  # a snapshot slower than the API's wait (0.5 s)
    outcome.check(
        "lag_reported", missing <= 0.1 * len(samples), f"{missing} of {len(samples)} scrapes"
    )
    lags = [s.events_lag for s in known]
    outcome.check("lag_never_increases", all(a >= b for a, b in zip(lags, lags[1:], strict=False)))
    zero = next((s for s in known if s.events_lag == 0), None)
    outcome.check("lag_reaches_0", zero is not None)
    counted = [s for s in known if s.stored is not None]
    off = [s for s in counted if not _between(s, topic.events())]
    outcome.check("lag_matches_stored_events", not off, f"{len(off)} of {len(counted)} scrapes")
    draining = next((s for s in known if 0 < s.events_lag < lags[0]), zero)
    drain_rate = None
    if zero is not None and draining is not None and zero.scrape.at > draining.scrape.at:
        drain_rate = draining.events_lag / (zero.scrape.at - draining.scrape.at)
        outcome.recover_s = round(zero.scrape.at - started, 1)
    anchor_rate = anchor["events_per_s_after_first_commit"]
    share = None if drain_rate is None else drain_rate / anchor_rate
    outcome.check(
        "drain_rate_vs_benchmark",
        share is not None and share >= size.min_share,
        f"{share if share is None else round(share, 2)} of the anchor, {size.min_share} needed",
    )
    latencies = sorted(s.scrape.latency_s for s in samples)
    p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)]
    outcome.check("metrics_p95_under_1s", p95 < 1.0, f"p95 {p95:.2f} s")
    outcome.figures.update(
        workers=size.workers,
        partitions=PARTITIONS,
        records=sum(topic.records().values()),
        events_per_record=round(topic.events() / max(1, sum(topic.records().values())), 1),
        scrapes=len(samples),
        scrapes_counted=len(counted),
        scrapes_without_lag=missing,
        metrics_latency_p95_s=round(p95, 3),
        metrics_latency_max_s=round(latencies[-1], 3),
        start_to_first_drain_s=None if draining is None else round(draining.scrape.at - started, 1),
        drain_events_per_s=None if drain_rate is None else round(drain_rate),
        drain_end_to_end_events_per_s=(
            None if outcome.recover_s is None else round(topic.events() / outcome.recover_s)
        ),
        anchor_events=anchor["events"],
        anchor_events_per_s=round(anchor_rate),
        anchor_end_to_end_events_per_s=round(anchor["events_per_s"]),
        drain_share_of_anchor=None if share is None else round(share, 2),
        lag_series=_series(known, started),
    )


def _between(sample: Sample, events: int) -> bool:
    """Whether the events lagging lie between what the counts before and after leave."""
    assert sample.stored is not None and sample.events_lag is not None
    low, high = sample.stored
    return events - high <= sample.events_lag <= events - low


def _series(samples: list[Sample], started: float, points: int = 20) -> list[list[float]]:
    """About ``points`` [seconds since the workers started, events lagging] pairs."""
    step = max(1, len(samples) // points)
    picked = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    return [[round(s.scrape.at - started, 1), s.events_lag or 0] for s in picked]


def _count(outcome: Outcome, engine: Engine, events: list[dict[str, Any]]) -> None:
    """Every acknowledged event stored exactly once (the events table is keyed by event_id)."""
    published = {e["event_id"] for e in events}
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT event_id FROM events"))]
    outcome.counted = len(published & set(stored))
    outcome.lost = len(published - set(stored))
    outcome.duplicated = len(stored) - len(set(stored))
    outcome.check("nothing_else_stored", not set(stored) - published)


def _credits(
    outcome: Outcome, engine: Engine, events: list[dict[str, Any]], settings: Settings
) -> None:
    """Credit sums per (model, deal) and deal states against the independent reference."""
    started = time.monotonic()
    ref = reference_for(events, settings)
    want = {
        (model, deal.deal_id): sum(deal.credits[model].values())
        for deal in ref.deals.values()
        for model in reference.MODELS
        if model in deal.credits
    }
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT model_id, deal_id, sum(credit_minor) FROM credits "
                "WHERE model_id = ANY(:models) GROUP BY model_id, deal_id"
            ),
            {"models": reference.MODELS},
        )
        got = {(m, d): int(total) for m, d, total in rows}
    wrong = {k for k in want.keys() | got.keys() if want.get(k) != got.get(k)}
    over = sum(1 for k in wrong if got.get(k, 0) > want.get(k, 0))
    outcome.duplicated += over
    outcome.check("credits_match_reference", not wrong, f"{len(wrong)} (model, deal) sums differ")
    states_ok = deal_states(engine) == expected_deal_states(ref)
    outcome.check("deal_states_match_reference", states_ok)
    outcome.figures["credited_deal_models"] = len(want)
    outcome.figures["won_deals"] = sum(1 for d in ref.deals.values() if d.won)
    outcome.figures["reference_check_s"] = round(time.monotonic() - started, 1)
