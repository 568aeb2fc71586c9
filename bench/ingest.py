"""Batch ingest: events/s accepted and broker-acknowledged, against kafka-python's raw producer.

Both sides publish the same canonical events with the same producer settings (acks=all,
idempotent) to the same bundled broker; the ingest side goes through HTTP (1,000 events a
request, several concurrent clients), validation and the publisher.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import make_key, median_of, simulated_events, timer
from services.core.broker import free_port
from services.core.db.migrate import upgrade
from services.core.events import EVENT_LIST_ADAPTER, encode, partition_key
from services.core.kafka import ensure_topics, make_producer
from services.core.settings import Settings
from tests.support.infra import running_broker
from tests.support.processes import services_ingest_only


def raw_producer_rate(settings: Settings, events: list[dict[str, Any]]) -> float:
    """Events/s of one kafka-python producer sending pre-encoded canonical events."""
    validated = EVENT_LIST_ADAPTER.validate_python(events)
    payloads = [(partition_key(e), encode(e)) for e in validated]
    producer = make_producer(settings)
    try:
        with timer() as elapsed:
            futures = [producer.send(settings.events_topic, key=k, value=v) for k, v in payloads]
            producer.flush(120)
            for f in futures:
                f.get(0)
            return len(payloads) / elapsed()
    finally:
        producer.close()


def http_ingest_rate(
    url: str, key: str, events: list[dict[str, Any]], *, clients: int, batch: int = 1000
) -> float:
    """Events/s through ``POST /v1/events`` with ``clients`` concurrent clients."""
    bodies = [orjson.dumps({"events": events[i : i + batch]}) for i in range(0, len(events), batch)]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    errors: list[str] = []

    def client(mine: list[bytes]) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            for body in mine:
                response = http.post("/v1/events", content=body)
                if response.status_code != 202:
                    errors.append(f"{response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(bodies[i::clients],)) for i in range(clients)]
    with timer() as elapsed:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = elapsed()
    if errors:
        raise RuntimeError(f"ingest refused batches: {errors[:3]}")
    return len(events) / seconds


def run(*, quick: bool) -> dict[str, Any]:
    """Measure both rates (median of repeated runs) and return the figures."""
    n = 10_000 if quick else 200_000
    runs = 1 if quick else 3
    clients = 4
    events = simulated_events(n)
    with running_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(db)
        key = make_key(db, ["ingest"])
        port = free_port()
        settings = Settings(
            _env_file=None,
            database_url=db,
            kafka_bootstrap_servers=bootstrap,
            events_topic=f"bench-{uuid.uuid4().hex[:6]}",
            ingest_port=port,
        )
        ensure_topics(settings)
        raw, raw_runs = median_of(runs, lambda: raw_producer_rate(settings, events))
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLOSEDLOOP_EVENTS_TOPIC": settings.events_topic,
            "CLOSEDLOOP_INGEST_PORT": str(port),
        }
        by_processes: dict[int, tuple[float, list[float]]] = {}
        for processes in (1, 2):
            env["CLOSEDLOOP_INGEST_WORKERS"] = str(processes)
            with services_ingest_only(env, Path(tmp), port=port):
                url = f"http://127.0.0.1:{port}"
                http_ingest_rate(url, key, events[:4000], clients=clients)  # warm-up
                by_processes[processes] = median_of(
                    runs, lambda url=url: http_ingest_rate(url, key, events, clients=clients)
                )
    rate, rate_runs = by_processes[2]
    return {
        "events": len(events),
        "clients": clients,
        "batch": 1000,
        "ingest_processes": 2,
        "ingest_events_per_s": rate,
        "ingest_runs": rate_runs,
        "one_process_events_per_s": by_processes[1][0],
        "one_process_runs": by_processes[1][1],
        "raw_producer_events_per_s": raw,
        "raw_runs": raw_runs,
        "ratio": rate / raw,
    }
