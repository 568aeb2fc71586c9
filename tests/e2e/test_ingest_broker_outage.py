"""A broker outage costs ingest clients a fast 503, and never its health probes (issue 9, item 7).

The ingest service runs as a real process (uvicorn, its threadpool, the real producer) against
the real bundled broker, which is killed mid-run and restarted on the same port. Before the
fix, every request waited for the publish timeout (p50 9.6 s, max 19.5 s over 50 concurrent
requests) and ``/healthz`` queued behind them for up to 9.5 s: a liveness probe would have
killed a healthy process.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from services.core.auth import create_key
from services.core.broker import free_port, start_bundled_broker, wait_for_port
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.events import decode_record
from tests.support.infra import sqlite_database
from tests.support.processes import start_service, stop

pytestmark = pytest.mark.e2e

PUBLISH_TIMEOUT_S = 5.0
CONCURRENT = 50
FAST_503_S = 1.0
HEALTH_S = 0.2
TOPIC = "outage-events"


def touch() -> dict[str, Any]:
    return {
        "event_id": f"outage-{uuid.uuid4().hex}",
        "type": "touch",
        "occurred_at": "2026-03-01T10:00:00Z",
        "campaign_id": "c1",
        "contact_id": "p1",
    }


@contextmanager
def killable_broker(port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_bundled_broker(port)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


class HealthPoller:
    """Times ``GET /healthz`` every 50 ms on its own connection, in the background."""

    def __init__(self, base_url: str) -> None:
        self.base_url, self.latencies = base_url, []  # type: ignore[var-annotated]
        self.statuses: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                self.statuses.add(client.get("/healthz").status_code)
                self.latencies.append(time.perf_counter() - start)
                time.sleep(0.05)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def topic_event_ids(bootstrap: str, topic: str) -> set[str]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ids: set[str] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    ids.update(e.event_id for e in decode_record(record.value).events)
            if all(
                consumer.highwater(tp) is not None
                and consumer.position(tp) >= (consumer.highwater(tp) or 0)
                for tp in parts
            ):
                break
        return ids
    finally:
        consumer.close()


class Ingest:
    """The ingest process under test, a client with room for the concurrent requests."""

    def __init__(self, client: httpx.Client, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(self, body: Any) -> tuple[int, float, httpx.Response]:
        """POST ``body`` to /v1/events; return the status, the seconds it took, the response."""
        start = time.perf_counter()
        response = self.client.post("/v1/events", content=orjson.dumps(body), headers=self.headers)
        return response.status_code, time.perf_counter() - start, response

    def wave(self, pool: ThreadPoolExecutor) -> list[tuple[int, float, httpx.Response]]:
        """POST ``CONCURRENT`` single events at once."""
        return list(pool.map(lambda _: self.post(touch()), range(CONCURRENT)))


@contextmanager
def ingest_process(tmp_path: Path, bootstrap: str) -> Iterator[Ingest]:
    """``closedloop ingest`` on a fresh SQLite key database, with an ``ingest`` key."""
    port = free_port()
    with sqlite_database(tmp_path) as url:
        engine = make_engine(url)
        with make_sessionmaker(engine)() as session:
            key = create_key(session, name="outage", scopes=["ingest"])
            session.commit()
        engine.dispose()
        env = {
            "CLOSEDLOOP_DATABASE_URL": url,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLOSEDLOOP_INGEST_PORT": str(port),
            "CLOSEDLOOP_EVENTS_TOPIC": TOPIC,
            "CLOSEDLOOP_DEAD_LETTER_TOPIC": "outage-dead",
            "CLOSEDLOOP_TOPIC_PARTITIONS": "3",
            "CLOSEDLOOP_PUBLISH_TIMEOUT_S": str(PUBLISH_TIMEOUT_S),
        }
        proc = start_service("ingest", env, tmp_path / "ingest.log")
        try:
            wait_for_port(port, timeout_s=60)
            limits = httpx.Limits(max_connections=CONCURRENT + 5)
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
            ) as client:
                yield Ingest(client, key)
        finally:
            stop(proc)


def test_broker_outage_answers_503_fast_and_health_never_waits(tmp_path: Path) -> None:
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    with killable_broker(broker_port) as broker, ingest_process(tmp_path, bootstrap) as ingest:
        accepted = [touch()]
        assert ingest.post(accepted[0])[0] == 202
        broker.kill()
        broker.wait(5)
        with (
            HealthPoller(str(ingest.client.base_url)) as health,
            ThreadPoolExecutor(CONCURRENT) as pool,
        ):
            # The first requests find out (within the publish timeout; sooner, in fact).
            first = ingest.wave(pool)
            assert {status for status, _, _ in first} == {503}
            assert max(s for _, s, _ in first) < PUBLISH_TIMEOUT_S + 1
            # Known down: every later request is answered at once.
            for _ in range(2):
                wave = ingest.wave(pool)
                assert {status for status, _, _ in wave} == {503}
                seconds = sorted(s for _, s, _ in wave)
                assert seconds[-1] < FAST_503_S, seconds
                for _, _, response in wave:
                    assert response.headers["retry-after"] == "5"
                    assert response.headers["content-type"] == "application/problem+json"
            started = time.perf_counter()
            ready = ingest.client.get("/readyz")
            ready_s = time.perf_counter() - started
        print(
            f"first wave max {max(s for _, s, _ in first):.3f}s; known-down wave p50 "
            f"{statistics.median(seconds):.3f}s max {seconds[-1]:.3f}s; healthz max "
            f"{max(health.latencies):.3f}s over {len(health.latencies)}"
        )
        assert health.statuses == {200} and len(health.latencies) >= 5
        assert max(health.latencies) < HEALTH_S, sorted(health.latencies)[-5:]
        assert ready.status_code == 503 and ready_s < HEALTH_S
        assert "broker" in ready.json()["detail"]
        # The first event went to the broker that died (in memory: gone with it).
        assert_recovers(ingest, broker_port, bootstrap)


def assert_recovers(ingest: Ingest, broker_port: int, bootstrap: str) -> None:
    """Restart the broker: requests get 202 again, and their events are on the topic."""
    with killable_broker(broker_port):
        accepted = []
        deadline = time.monotonic() + 30
        while True:
            event = touch()
            status = ingest.post(event)[0]
            if status == 202:
                accepted.append(event)
                break
            assert status == 503
            assert time.monotonic() < deadline, "ingest never recovered"
            time.sleep(0.2)
        batch = [touch() for _ in range(20)]
        assert ingest.post({"events": batch})[0] == 202
        accepted += batch
        assert ingest.client.get("/readyz").status_code == 200
        assert {e["event_id"] for e in accepted} <= topic_event_ids(bootstrap, TOPIC)
