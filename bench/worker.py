"""Worker throughput: events/s from the topic into PostgreSQL with every model's credits.

The topic is filled first; the anchor is kafka-python's raw consumer reading the same
records. The worker runs as a real process (``closedloop worker``); its rate is measured
from the first stored event to the last (group join and start-up excluded, reported apart).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select

from bench.common import peak_rss_bytes, simulated_events, timer
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import CreditRow, EventRow, TouchRow
from services.core.events import EVENT_LIST_ADAPTER
from services.core.kafka import ensure_topics
from services.core.publisher import Publisher
from services.core.settings import Settings
from tests.support.infra import postgres_database, running_broker
from tests.support.processes import start_service, stop


def fill_topic(settings: Settings, events: list[dict[str, Any]], *, batch: int = 1000) -> int:
    """Publish the events as ingest does (batch records, ``batch`` events a request)."""
    publisher = Publisher(settings, client_id="bench-fill")
    validated = EVENT_LIST_ADAPTER.validate_python(events)
    try:
        for start in range(0, len(validated), batch):
            publisher.publish(validated[start : start + batch])
    finally:
        publisher.close()
    return len(events)


def raw_consumer_rate(settings: Settings, events: int) -> float:
    """Events/s of one kafka-python consumer reading the whole topic (records not decoded)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        max_poll_records=settings.worker_max_poll_records,
    )
    parts = [TopicPartition(settings.events_topic, p) for p in range(settings.topic_partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    deadline = time.monotonic() + 300
    with timer() as elapsed:
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
            marks = [consumer.highwater(tp) for tp in parts]
            if all(
                m is not None and consumer.position(tp) >= m
                for tp, m in zip(parts, marks, strict=True)
            ):
                break
        seconds = elapsed()
    consumer.close()
    return events / max(1e-9, seconds)


def measure(events: list[dict[str, Any]], *, deadline_s: float) -> dict[str, Any]:
    """Fill a fresh topic and database with ``events``; time the raw consumer and the worker."""
    with (
        running_broker() as bootstrap,
        postgres_database("closedloop_bench") as db,
        tempfile.TemporaryDirectory() as tmp,
    ):
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        settings = Settings(
            _env_file=None, database_url=db, kafka_bootstrap_servers=bootstrap, events_topic=topic
        )
        ensure_topics(settings)
        fill_topic(settings, events)
        raw = raw_consumer_rate(settings, len(events))
        distinct = len({e["event_id"] for e in events})
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLOSEDLOOP_EVENTS_TOPIC": topic,
            "CLOSEDLOOP_CONSUMER_GROUP": f"w-{topic}",
        }
        engine = make_engine(db)
        sessions = make_sessionmaker(engine)
        with timer() as since_start:
            proc = start_service("worker", env, Path(tmp) / "worker.log")
            first_at = stored = first_count = 0.0
            rss = 0
            try:
                deadline = time.monotonic() + deadline_s
                while time.monotonic() < deadline:
                    with sessions() as session:
                        stored = session.scalar(select(func.count()).select_from(EventRow)) or 0
                    rss = max(rss, peak_rss_bytes(proc.pid))
                    if stored and not first_at:
                        first_at, first_count = since_start(), stored
                    if stored >= distinct:
                        break
                    time.sleep(0.1)
                done_at = since_start()
            finally:
                stop(proc)
        with sessions() as session:
            credits = session.scalar(select(func.count()).select_from(CreditRow)) or 0
            touches = session.scalar(select(func.count()).select_from(TouchRow)) or 0
        engine.dispose()
    if stored < distinct:
        raise RuntimeError(f"worker stored {stored} of {distinct} events before the deadline")
    return {
        "events": distinct,
        "touches": touches,
        # From the first committed transaction to the last: start-up and group join apart.
        "worker_events_per_s": (distinct - first_count) / max(1e-9, done_at - first_at),
        "worker_start_to_first_s": first_at,
        "worker_total_s": done_at,
        "credit_rows": credits,
        "worker_peak_rss_mb": rss / 2**20,
        "raw_consumer_events_per_s": raw,
    }


def run(*, quick: bool) -> dict[str, Any]:
    """Headline: the median of 3 runs on ~100k events; then one run per size for growth."""
    if quick:
        return measure(simulated_events(10_000), deadline_s=120)
    runs = [measure(simulated_events(100_000), deadline_s=1200) for _ in range(3)]
    headline = sorted(runs, key=lambda r: r["worker_events_per_s"])[1]
    growth = [
        measure(simulated_events(n), deadline_s=3600)
        for n in (26_000, 260_000)  # about 10k and 100k touches
    ]
    return {
        **headline,
        "worker_runs": [r["worker_events_per_s"] for r in runs],
        "raw_runs": [r["raw_consumer_events_per_s"] for r in runs],
        "growth": [
            {k: r[k] for k in ("events", "touches", "worker_events_per_s", "worker_peak_rss_mb")}
            for r in growth
        ],
    }
