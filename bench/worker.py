"""Worker throughput: events/s from the topic into PostgreSQL, with 1, 2, 3… worker processes.

Each run starts from nothing: a fresh broker, topic and database. The topic (``max(6,
workers)`` partitions) is filled first with a simulated CRM history (the realistic mix),
published as ingest publishes it (batch records of 1,000-event requests); the anchor is
kafka-python's raw consumer reading the same records. Then N ``closedloop worker`` processes
start together in one consumer group, and the clock runs from their start until every event
is applied:
- every partition's offset is stored in the database (``consumer_offsets``: each batch's
  transaction records it with the batch's effects),
- the post-commit work queues are empty (``pending_impacts``, ``dirty_deals``,
  ``dirty_roots``: checked in one statement, so in one snapshot; a queue row is assumed to
  stay until the transaction that finishes its work commits),
- and the group's offsets are committed to Kafka.

Figures per run: the rate end to end (start-up and group join included) and from the first
committed batch (start-up apart: the figure BENCHMARKS.md §3 reported before), the CPU
seconds spent meanwhile by the workers (and how much of it before the first commit: start-up),
PostgreSQL, the broker and the bench itself (the poller) against the machine's capacity
(``bench.cpu``; per event too, for capacity planning), each worker's share of the events (from
its log), and the load average before and after. Every size runs on a fresh database,
so the rate per size shows whether it falls as the database grows. With several runs per
configuration the worker counts alternate (1, 2, 3, 1, 2, 3, …) so a change in the machine's
load falls on all of them, and the median is reported.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Connection, Engine, text

from bench.common import (
    broker_process,
    peak_rss_bytes,
    simulated_events,
    timer,
    worker_processes,
)
from bench.cpu import CpuMeter, load_average, proc_times
from services.core.db.engine import make_engine
from services.core.events import EVENT_LIST_ADAPTER
from services.core.kafka import ensure_topics
from services.core.publisher import Publisher
from services.core.settings import Settings
from tests.support.infra import postgres_database

WORKERS = (1, 2, 3)
SIZES = (100_000, 300_000, 1_000_000)
QUICK_WORKERS, QUICK_SIZES = (1, 2), (5_000,)
QUEUE_TABLES = ("pending_impacts", "dirty_deals", "dirty_roots")
POLL_S = 0.05
_APPLIED = re.compile(r"applied \d+ batch(?:es)?: (\d+) events")


def fill_topic(settings: Settings, events: list[dict[str, Any]], *, batch: int = 1000) -> int:
    """Publish the events as ingest does (batch records, ``batch`` events a request)."""
    publisher = Publisher(settings, client_id="bench-fill")
    try:
        for start in range(0, len(events), batch):
            items = events[start : start + batch]
            publisher.publish(EVENT_LIST_ADAPTER.validate_python(items), items=items)
    finally:
        publisher.close()
    return len(events)


def _partitions(settings: Settings) -> list[TopicPartition]:
    return [TopicPartition(settings.events_topic, p) for p in range(settings.topic_partitions)]


def end_offsets(settings: Settings) -> dict[int, int]:
    """Return each partition's end offset (the next offset a producer would get)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        ends = consumer.end_offsets(_partitions(settings))
    finally:
        consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def raw_consumer_rate(settings: Settings, events: int) -> float:
    """Events/s of one kafka-python consumer reading the whole topic (records not decoded)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        max_poll_records=settings.worker_max_poll_records,
    )
    parts = _partitions(settings)
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


def existing_queues(engine: Engine) -> list[str]:
    """Return the work-queue tables this schema has (the worker drains them after commits)."""
    with engine.connect() as conn:
        return [t for t in QUEUE_TABLES if conn.scalar(text(f"SELECT to_regclass('{t}')"))]


def stored_offsets(conn: Connection, topic: str) -> dict[int, int]:
    """Return the next offset per partition the database has applied."""
    rows = conn.execute(
        text("SELECT partition, next_offset FROM consumer_offsets WHERE topic = :t"), {"t": topic}
    )
    return {p: o for p, o in rows.all()}


def queued(conn: Connection, queues: list[str]) -> bool:
    """Whether any work queue holds a row (one statement: one snapshot of them all)."""
    if not queues:
        return False
    tests = " OR ".join(f"EXISTS (SELECT 1 FROM {t})" for t in queues)
    return bool(conn.scalar(text(f"SELECT {tests}")))


def caught_up(offsets: dict[int, int], ends: dict[int, int]) -> bool:
    """Whether every partition's applied offset reached its end."""
    return all(offsets.get(p, 0) >= end for p, end in ends.items() if end)


def kafka_committed(reader: KafkaConsumer, topic: str, ends: dict[int, int]) -> dict[int, int]:
    """Return the committed offset per partition of ``topic`` of ``reader``'s group."""
    committed = {p: reader.committed(TopicPartition(topic, p)) for p in ends}
    return {p: offset for p, offset in committed.items() if offset is not None}


def events_per_worker(logs: Path, count: int) -> list[int]:
    """Return how many events each worker's log says it applied (its ``applied`` lines)."""
    shares = []
    for n in range(1, count + 1):
        log = logs / f"w{n}.log"
        body = log.read_text(errors="replace") if log.exists() else ""
        shares.append(sum(int(m) for m in _APPLIED.findall(body)))
    return shares


def _failure(what: str, logs: Path, conn: Connection) -> RuntimeError:
    sessions = conn.execute(
        text(
            "SELECT state, wait_event_type, wait_event, left(query, 100) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    ).all()
    tails = {p.name: p.read_text(errors="replace")[-1200:] for p in sorted(logs.glob("w*.log"))}
    return RuntimeError(f"{what}; sessions {sessions}; logs {tails}")


@dataclass
class _Clock:
    """The moments of one run, in seconds since the workers started."""

    first_commit: float = 0.0
    applied: float = 0.0  # every offset stored in the database
    drained: float = 0.0  # and the work queues empty
    committed: float = 0.0  # and Kafka has the group's offsets
    first_events: int = 0
    worker_cpu_at_first_commit: float = 0.0  # start-up: imports, database, group join
    queues: list[str] = field(default_factory=list)


def _wait_applied(
    engine: Engine,
    procs: list[Any],
    *,
    topic: str,
    ends: dict[int, int],
    queues: list[str],
    since_start: Any,
    logs: Path,
    deadline_s: float,
) -> _Clock:
    """Poll the database until every event is applied and every queue drained."""
    clock = _Clock()
    deadline = time.monotonic() + deadline_s
    with engine.connect() as conn:
        while True:
            offsets = stored_offsets(conn, topic)
            conn.commit()
            if offsets and not clock.first_commit:
                clock.first_commit = since_start()
                clock.first_events = conn.scalar(text("SELECT count(*) FROM events")) or 0
                times = [proc_times(p.pid) for p in procs]
                clock.worker_cpu_at_first_commit = sum(t.own for t in times if t is not None)
            if caught_up(offsets, ends):
                clock.applied = clock.applied or since_start()
                if not queued(conn, queues):
                    clock.drained = since_start()
                    conn.commit()
                    return clock
            conn.commit()
            if any(p.poll() is not None for p in procs):
                raise _failure("a worker exited", logs, conn)
            if time.monotonic() > deadline:
                raise _failure(
                    f"not applied after {deadline_s:.0f} s: {offsets} of {ends}", logs, conn
                )
            time.sleep(POLL_S)


def _wait_kafka_commits(
    reader: KafkaConsumer, topic: str, ends: dict[int, int], deadline_s: float
) -> None:
    deadline = time.monotonic() + deadline_s
    while not caught_up(kafka_committed(reader, topic, ends), ends):
        if time.monotonic() > deadline:
            raise RuntimeError("the database has every offset but Kafka's commits lag behind")
        time.sleep(POLL_S)


def _fill(settings: Settings, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Create and fill the topic; time the raw consumer over it; return the end offsets."""
    ensure_topics(settings)
    with timer() as filling:
        fill_topic(settings, events)
        fill_s = filling()
    return {
        "raw_consumer_events_per_s": raw_consumer_rate(settings, len(events)),
        "fill_events_per_s": len(events) / max(1e-9, fill_s),
        "ends": end_offsets(settings),
    }


@dataclass
class _Timed:
    clock: _Clock
    cpu: dict[str, float]
    rss_bytes: int
    shares: list[int]


def _time_workers(
    settings: Settings, *, workers: int, broker_pid: int, ends: dict[int, int], deadline_s: float
) -> _Timed:
    """Start the workers; wait until every event is applied; return the clock and the CPU."""
    topic, group = settings.events_topic, f"w-{settings.events_topic}"
    env = {
        "CLOSEDLOOP_DATABASE_URL": settings.database_url,
        "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CLOSEDLOOP_EVENTS_TOPIC": topic,
        "CLOSEDLOOP_CONSUMER_GROUP": group,
        "CLOSEDLOOP_TOPIC_PARTITIONS": str(settings.topic_partitions),
    }
    engine = make_engine(settings.database_url)
    queues = existing_queues(engine)
    # A member of the workers' group that never subscribes: it only reads their commits.
    reader = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    database = settings.database_url.rsplit("/", 1)[1]
    meter = CpuMeter(database, {"bench": [os.getpid()], "broker": [broker_pid]})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            logs = Path(tmp)
            meter.start()
            with timer() as since_start, worker_processes(workers, env, logs) as procs:
                meter.groups["worker"] = [p.pid for p in procs]
                clock = _wait_applied(
                    engine,
                    procs,
                    topic=topic,
                    ends=ends,
                    queues=queues,
                    since_start=since_start,
                    logs=logs,
                    deadline_s=deadline_s,
                )
                _wait_kafka_commits(reader, topic, ends, deadline_s=60)
                clock.committed = since_start()
                cpu = meter.stop()
                rss = max(peak_rss_bytes(p.pid) for p in procs)
            clock.queues = queues
            return _Timed(clock, cpu, rss, events_per_worker(logs, workers))
    finally:
        reader.close(autocommit=False)
        engine.dispose()


def _counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {
            table: conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0
            for table in ("events", "touches", "credits")
        }
    engine.dispose()
    return counts


def measure(events: list[dict[str, Any]], *, workers: int, deadline_s: float) -> dict[str, Any]:
    """Fill a fresh topic and database with ``events``; time ``workers`` workers applying them."""
    load_before = load_average()
    distinct = len({e["event_id"] for e in events})
    with broker_process() as (bootstrap, broker_pid), postgres_database("closedloop_bench") as db:
        settings = Settings(
            _env_file=None,
            database_url=db,
            kafka_bootstrap_servers=bootstrap,
            events_topic=f"bench-{uuid.uuid4().hex[:6]}",
            topic_partitions=max(6, workers),
        )
        filled = _fill(settings, events)
        timed = _time_workers(
            settings,
            workers=workers,
            broker_pid=broker_pid,
            ends=filled.pop("ends"),
            deadline_s=deadline_s,
        )
        counts = _counts(db)
    if counts["events"] != distinct:
        raise RuntimeError(f"stored {counts['events']} events of {distinct}")
    clock, cpu = timed.clock, timed.cpu
    end_s = max(clock.drained, clock.committed)
    return {
        "workers": workers,
        "partitions": settings.topic_partitions,
        "events": distinct,
        "touches": counts["touches"],
        "credit_rows": counts["credits"],
        # End to end: from the workers' start (start-up and group join included).
        "events_per_s": distinct / max(1e-9, end_s),
        # From the first committed batch to the last (BENCHMARKS.md §3 before issue 13).
        "events_per_s_after_first_commit": (distinct - clock.first_events)
        / max(1e-9, end_s - clock.first_commit),
        "start_to_first_commit_s": clock.first_commit,
        "all_offsets_in_db_s": clock.applied,
        "queues_drained_s": clock.drained,
        "kafka_committed_s": clock.committed,
        "total_s": end_s,
        "queues_checked": clock.queues,
        "events_per_worker": timed.shares,
        "cpu_s": cpu,
        "worker_cpu_s_at_first_commit": round(clock.worker_cpu_at_first_commit, 2),
        "cpu_ms_per_event": {
            name: round(cpu[name] * 1000 / distinct, 3) for name in ("worker", "postgres", "broker")
        },
        "worker_peak_rss_mb": round(timed.rss_bytes / 2**20, 1),
        **filled,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median end-to-end rate (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda r: r["events_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def run(
    *,
    quick: bool,
    workers: list[int] | None = None,
    events: list[int] | None = None,
    runs: int | None = None,
) -> dict[str, Any]:
    """Measure every (size, worker count); several runs alternate counts, the median is kept.

    Default: 1, 2 and 3 workers at 100k, 300k and 1M events, 3 runs at the first size and 1
    at the others; ``quick``: 1 and 2 workers at 5k events, one run.
    """
    counts = list(workers or (QUICK_WORKERS if quick else WORKERS))
    sizes = list(events or (QUICK_SIZES if quick else SIZES))
    results: list[dict[str, Any]] = []
    for i, size in enumerate(sizes):
        history = simulated_events(size)
        repeats = runs or (3 if i == 0 and not quick else 1)
        done: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
        for _ in range(repeats):
            for n in counts:
                done[n].append(measure(history, workers=n, deadline_s=max(120, size / 300)))
        for n in counts:
            headline = _median_run(done[n])
            results.append(
                {
                    **headline,
                    "size": size,
                    "runs_events_per_s": [round(r["events_per_s"]) for r in done[n]],
                    "runs_events_per_s_after_first_commit": [
                        round(r["events_per_s_after_first_commit"]) for r in done[n]
                    ],
                }
            )
        del history
    first = results[0]
    return {
        # The first configuration's figures at the top (one worker, the first size by default).
        "worker_events_per_s": first["events_per_s"],
        "worker_events_per_s_after_first_commit": first["events_per_s_after_first_commit"],
        "credit_rows": first["credit_rows"],
        "results": results,
    }


def _cell(cpu: dict[str, float], name: str) -> str:
    return f"{cpu[name]:.1f} ({cpu[name] / max(1e-9, cpu['capacity']):.0%})"


def table(result: dict[str, Any]) -> str:
    """Render the runs as a Markdown table: rate and CPU split per size and worker count."""
    lines = [
        "| events (touches) | workers | ev/s end to end (runs) | ev/s after 1st commit "
        "| start → 1st commit | offsets in DB → drained | worker CPU s | PostgreSQL CPU s "
        "| broker CPU s | CPU ms/event (worker, PG) | ours / capacity | machine busy "
        "| events per worker | load avg before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        cpu = r["cpu_s"]
        runs = r["runs_events_per_s"]
        lines.append(
            f"| {r['events']:,} ({r['touches']:,}) | {r['workers']} "
            f"| **{r['events_per_s']:,.0f}**"
            + (f" ({' / '.join(f'{x:,}' for x in runs)})" if len(runs) > 1 else "")
            + f" | {r['events_per_s_after_first_commit']:,.0f}"
            f" | {r['start_to_first_commit_s']:.1f} s"
            f" | {r['queues_drained_s'] - r['all_offsets_in_db_s']:.2f} s"
            f" | {_cell(cpu, 'worker')} | {_cell(cpu, 'postgres')} | {_cell(cpu, 'broker')}"
            f" | {r['cpu_ms_per_event']['worker']:.2f}, {r['cpu_ms_per_event']['postgres']:.2f}"
            f" | {cpu['ours_total']:.1f} / {cpu['capacity']:.1f}"
            f" | {cpu['machine_busy'] / max(1e-9, cpu['capacity']):.0%}"
            f" | {' / '.join(f'{x:,}' for x in r['events_per_worker'])}"
            f" | {', '.join(str(x) for x in r['load_average_before'])} |"
        )
    return "\n".join(lines)
