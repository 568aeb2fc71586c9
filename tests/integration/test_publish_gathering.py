"""Gathered publishing on the real broker: concurrent requests share batch records, and each
is answered only once the broker acknowledged its own records.

The broker is frozen with SIGSTOP (a broker that stops answering, connections kept open) and
thawed with SIGCONT, so the records it had acknowledged are still there to read back. The
expected topic contents are the sent JSON items themselves, and the partition of a batch
record is recomputed here from the documented rule (CRC-32 of the entity key, modulo the
partition count).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from services.core.broker import free_port, start_bundled_broker
from services.core.events import EVENT_LIST_ADAPTER
from services.core.publisher import BrokerUnavailable, Overloaded, Publisher
from services.ingest.app import create_app
from tests.conftest import make_settings
from tests.integration.test_ingest import read_topic
from tests.support.signers.generic import sign

pytestmark = pytest.mark.integration

SECRET = "gathering-secret"


@contextmanager
def own_broker() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A bundled broker this test may freeze and thaw."""
    port = free_port()
    proc = start_bundled_broker(port)
    try:
        yield f"127.0.0.1:{port}", proc
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(5)


def touch(n: int) -> dict[str, Any]:
    return {
        "event_id": f"g-{uuid.uuid4().hex}",
        "type": "touch",
        "occurred_at": "2026-03-01T10:00:00Z",
        "campaign_id": f"c{n % 5}",
        "contact_id": f"p{n}",
    }


def entity_key(item: dict[str, Any]) -> bytes:
    """The documented entity key of the events used here (touches carry a contact)."""
    return f"contact:{item['contact_id']}".encode()


def topic_items(bootstrap: str, topic: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """The records of ``topic`` and every JSON item they hold, in record order."""
    records = read_topic(bootstrap, topic)
    items: list[dict[str, Any]] = []
    for record in records:
        value = orjson.loads(record.value)
        items.extend(value if isinstance(value, list) else [value])
    return records, items


def webhook(client: TestClient, body: bytes) -> int:
    headers = {"Content-Type": "application/json", "X-Closedloop-Signature": sign(SECRET, body)}
    return client.post("/v1/webhooks/generic", content=body, headers=headers).status_code


def test_concurrent_webhooks_share_records_and_every_event_is_on_the_topic(
    pg_url: str, broker: str
) -> None:
    settings = make_settings(database_url=pg_url, bootstrap=broker)
    sent = [touch(n) for n in range(400)]
    bodies = [orjson.dumps(item) for item in sent[:300]]
    # And some multi-event requests, whose events may share records with the others.
    bodies += [orjson.dumps({"events": sent[i : i + 10]}) for i in range(300, 400, 10)]
    app = create_app(settings.model_copy(update={"webhook_secret_generic": SECRET}))
    with TestClient(app) as client, ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(partial(webhook, client), bodies))
    assert statuses == [202] * len(bodies)
    records, items = topic_items(broker, settings.events_topic)
    # Every event exactly as sent, once (nothing retried here).
    assert Counter(orjson.dumps(i) for i in items) == Counter(orjson.dumps(i) for i in sent)
    # Gathered: fewer records than events, some of them batches of several requests' events.
    assert len(records) < len(sent) / 2, len(records)
    for record in records:
        value = orjson.loads(record.value)
        if isinstance(value, list):
            assert record.key is None
            assert {zlib.crc32(entity_key(i)) % 3 for i in value} == {record.partition}
        else:
            assert record.key == entity_key(value)
            assert zlib.crc32(record.key) % 3 == record.partition


def run_async_publishes(publisher: Publisher, batches: list[list[dict[str, Any]]]) -> list[Any]:
    """Publish each batch with ``publish_async`` concurrently; return counts or exceptions."""

    async def all_of_them() -> list[Any]:
        return await asyncio.gather(
            *(
                publisher.publish_async(EVENT_LIST_ADAPTER.validate_python(b), items=b)
                for b in batches
            ),
            return_exceptions=True,
        )

    return asyncio.run(all_of_them())


def test_no_publish_returns_before_the_broker_acknowledged_it() -> None:
    with own_broker() as (bootstrap, proc):
        settings = make_settings(database_url="sqlite://", bootstrap=bootstrap)
        publisher = Publisher(settings)
        try:
            publisher.warm_up()
            sync_batches = [[touch(n)] for n in range(5)]
            async_batches = [[touch(n)] for n in range(20)] + [[touch(n) for n in range(7)]]
            os.kill(proc.pid, signal.SIGSTOP)
            results: list[Any] = []
            threads = [
                threading.Thread(
                    target=lambda b=b: results.append(
                        publisher.publish(EVENT_LIST_ADAPTER.validate_python(b), items=b)
                    )
                )
                for b in sync_batches
            ]
            async_results: list[Any] = []
            threads.append(
                threading.Thread(
                    target=lambda: async_results.extend(
                        run_async_publishes(publisher, async_batches)
                    )
                )
            )
            for thread in threads:
                thread.start()
            time.sleep(1.5)  # the broker cannot acknowledge: nobody may have returned
            assert results == [] and async_results == []
            os.kill(proc.pid, signal.SIGCONT)
            for thread in threads:
                thread.join(10)
            assert results == [1] * 5
            assert async_results == [1] * 20 + [7]
            _, items = topic_items(bootstrap, settings.events_topic)
            expected = [e for b in sync_batches + async_batches for e in b]
            assert sorted(i["event_id"] for i in items) == sorted(e["event_id"] for e in expected)
        finally:
            publisher.close()


def test_a_broker_stopped_mid_stream_fails_the_waiting_requests_only(pg_url: str) -> None:
    with own_broker() as (bootstrap, proc):
        settings = make_settings(database_url=pg_url, bootstrap=bootstrap, publish_timeout_s=1.5)
        outcomes: list[tuple[str, int]] = []
        stop = threading.Event()

        def sender(client: TestClient, worker: int) -> None:
            n = 0
            while not stop.is_set():
                item = touch(worker * 10_000 + n)
                outcomes.append((item["event_id"], webhook(client, orjson.dumps(item))))
                n += 1

        with TestClient(
            create_app(settings.model_copy(update={"webhook_secret_generic": SECRET}))
        ) as client:
            workers = [threading.Thread(target=sender, args=(client, w)) for w in range(16)]
            for worker in workers:
                worker.start()
            time.sleep(1.0)
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(3.0)  # longer than the publish timeout: the waiting requests fail
            os.kill(proc.pid, signal.SIGCONT)
            deadline = time.monotonic() + 20
            while not any(s == 202 for _, s in outcomes[-16:]):  # until it recovered
                assert time.monotonic() < deadline, "never recovered"
                time.sleep(0.2)
            time.sleep(0.5)
            stop.set()
            for worker in workers:
                worker.join(20)
        statuses = Counter(s for _, s in outcomes)
        assert set(statuses) == {202, 503}, statuses
        assert statuses[503] >= 16  # at least every request waiting when it stopped
        _, items = topic_items(bootstrap, settings.events_topic)
        on_topic = {i["event_id"] for i in items}
        accepted = {event_id for event_id, status in outcomes if status == 202}
        assert accepted <= on_topic  # no 202 without its record on the topic


def test_a_full_queue_refuses_at_once_and_close_flushes_what_waits(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with own_broker() as (bootstrap, proc):
        settings = make_settings(database_url=pg_url, bootstrap=bootstrap, publish_timeout_s=8.0)
        monkeypatch.setattr("services.ingest.app.Publisher", partial(Publisher, max_pending=3))
        app = create_app(settings.model_copy(update={"webhook_secret_generic": SECRET}))
        sent = [touch(n) for n in range(5)]
        statuses: dict[str, int] = {}
        with TestClient(app) as client:
            assert webhook(client, orjson.dumps(sent[0])) == 202  # connected, topic made
            os.kill(proc.pid, signal.SIGSTOP)
            # One request in the send the broker does not answer, three waiting behind it.
            pool = ThreadPoolExecutor(4)
            futures = {}
            for item in sent[1:5]:
                futures[item["event_id"]] = pool.submit(webhook, client, orjson.dumps(item))
                time.sleep(0.3)
            extra = touch(99)
            started = time.perf_counter()
            body = orjson.dumps(extra)
            headers = {
                "Content-Type": "application/json",
                "X-Closedloop-Signature": sign(SECRET, body),
            }
            refused = client.post("/v1/webhooks/generic", content=body, headers=headers)
            assert time.perf_counter() - started < 1.0
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert "too many events" in refused.json()["detail"]
            assert not any(f.done() for f in futures.values())
            # Closing the publisher (what the app's shutdown does) must let the waiting ones
            # through. Called here, while the client still carries their answers: leaving the
            # client first stops its portal, and an answer not yet read by then was lost.
            threading.Timer(1.0, os.kill, (proc.pid, signal.SIGCONT)).start()
            client.app.state.publisher.close()  # type: ignore[attr-defined]
            statuses = {event_id: f.result(30) for event_id, f in futures.items()}  # loaded
            pool.shutdown()
        assert set(statuses.values()) == {202}
        _, items = topic_items(bootstrap, settings.events_topic)
        assert sorted(i["event_id"] for i in items) == sorted(e["event_id"] for e in sent)


def test_close_is_bounded_and_later_publishes_fail_fast() -> None:
    with own_broker() as (bootstrap, proc):
        settings = make_settings(
            database_url="sqlite://", bootstrap=bootstrap, publish_timeout_s=1.0
        )
        publisher = Publisher(settings)
        publisher.warm_up()
        item = touch(1)
        events = EVENT_LIST_ADAPTER.validate_python([item])
        os.kill(proc.pid, signal.SIGSTOP)
        outcome: list[Any] = []

        def publish() -> None:
            try:
                outcome.append(publisher.publish(events, items=[item]))
            except BrokerUnavailable as exc:
                outcome.append(exc)

        waiting = threading.Thread(target=publish)
        waiting.start()
        time.sleep(0.2)
        started = time.perf_counter()
        publisher.close()
        assert time.perf_counter() - started < 1.0 + 2.5  # the timeout, and the force-close
        waiting.join(5)
        assert len(outcome) == 1 and isinstance(outcome[0], BrokerUnavailable)
        with pytest.raises(BrokerUnavailable, match="shutting down"):
            publisher.publish(events, items=[item])
        assert not isinstance(outcome[0], Overloaded)
