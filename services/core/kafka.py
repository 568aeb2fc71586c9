"""Kafka client factories and topic set-up (kafka-python; broker-agnostic).

Clients are created by the services' lifespans, never at import time.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError

from services.core.settings import Settings


def bootstrap_servers(settings: Settings) -> list[str]:
    """Split the comma-separated bootstrap setting into a list."""
    return [s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()]


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """Create an idempotent producer that waits for every in-sync replica (acks=all)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "max_block_ms": int(settings.publish_timeout_s * 1000),
        "client_id": "closedloop-ingest",
    }
    options.update(overrides)
    return KafkaProducer(**options)


def make_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """Create a consumer-group member with auto-commit off (the worker commits after the DB)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "group_id": settings.consumer_group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
        "max_poll_records": settings.worker_max_poll_records,
        "request_timeout_ms": max(settings.kafka_request_timeout_ms, 30000),
        "client_id": "closedloop-worker",
        "reconnect_backoff_max_ms": 5000,  # back within seconds of a broker outage's end
        # Between two polls the loop applies one bounded batch (fits run on the maintenance
        # thread), so a member silent for 2 minutes is stuck. A rebalance waits this long for
        # every member to rejoin: with the bundled broker a join racing a leave under load
        # once held a whole group for minutes; now the group goes on without the stuck member,
        # which rejoins at its next poll (its late offset commit is refused and harmless).
        "max_poll_interval_ms": 120_000,
    }
    options.update(overrides)
    return KafkaConsumer(**options)


def make_offset_reader(
    settings: Settings, *, timeout_s: float, client_id: str = "closedloop-offsets"
) -> KafkaConsumer:
    """Create a client that only reads partition offsets (``log_offsets``): no consumer group,
    no commits; its bootstrap and every request are bounded by ``timeout_s``."""
    timeout_ms = max(int(timeout_s * 1000), 100)
    return KafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings),
        group_id=None,
        enable_auto_commit=False,
        client_id=client_id,
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        reconnect_backoff_max_ms=1000,
        # Its one fetch per partition only reads the high watermark: no waiting for new
        # records, and the smallest answer the broker gives (one record batch).
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=1,
    )


def log_offsets(
    reader: KafkaConsumer, topic: str, *, timeout_s: float
) -> tuple[dict[int, int], dict[int, int]]:
    """Return each partition's first and end offsets (the end: the next offset a record gets).

    The end is the larger of ListOffsets' latest offset and the high watermark a fetch from
    there reports. They agree on Apache Kafka, where the fetch finds nothing and answers at
    once. The bundled broker answers ListOffsets with the base offset of the last record batch
    plus one, short of the end by the rest of that batch; its fetch reports the true end.
    A topic the broker does not know has no partitions: two empty maps.
    """
    partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic))]
    if not partitions:
        return {}, {}
    timeout_ms = int(timeout_s * 1000)
    first = reader.beginning_offsets(partitions, timeout_ms=timeout_ms)
    listed = reader.end_offsets(partitions, timeout_ms=timeout_ms)
    deadline = time.monotonic() + timeout_s
    reader.assign(partitions)  # fresh partition states: no high watermark yet
    try:
        for tp in partitions:
            reader.seek(tp, listed[tp])
        while any(reader.highwater(tp) is None for tp in partitions):
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"no high watermark for {topic} in {timeout_s} s")
            reader.poll(timeout_ms=100, max_records=1)
        marks = {tp: int(reader.highwater(tp)) for tp in partitions}
    finally:
        reader.assign([])  # fetches nothing between snapshots
    return (
        {tp.partition: int(offset) for tp, offset in first.items()},
        {tp.partition: max(int(listed[tp]), marks[tp]) for tp in partitions},
    )


def ensure_topics(settings: Settings, *, timeout_s: float | None = None) -> None:
    """Create the events and dead-letter topics with the configured partition count if missing.

    The bundled broker would auto-create an unknown topic with ONE partition on first produce,
    so every entry point calls this first.
    """
    bounds = (
        {}
        if timeout_s is None
        else {
            "bootstrap_timeout_ms": int(timeout_s * 1000),
            "request_timeout_ms": int(timeout_s * 1000),
        }
    )
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers(settings), client_id="closedloop-admin", **bounds
    )
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=1)
            for name in (settings.events_topic, settings.dead_letter_topic)
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                admin.create_topics(wanted)
    finally:
        admin.close()


def broker_answers(
    settings: Settings, *, timeout_s: float = 2.0, client_id: str = "closedloop-broker-check"
) -> bool:
    """Return whether the broker answers a metadata request within about ``timeout_s``."""
    if not broker_listening(settings, timeout_s=timeout_s):
        return False
    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers(settings),
            client_id=client_id,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except Exception:  # any failure to connect means "not ready"
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def broker_listening(settings: Settings, *, timeout_s: float = 1.0) -> bool:
    """Return whether any bootstrap server accepts a TCP connection within ``timeout_s``.

    A refused connection is an answer at once, and a quiet one: kafka-python would retry
    until its timeout, logging every attempt.
    """
    return any(_accepts_connections(s, timeout_s) for s in bootstrap_servers(settings))


def _accepts_connections(server: str, timeout_s: float) -> bool:
    host, _, port = server.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except ValueError:
        return True  # not host:port; let the Kafka client make sense of it
    except OSError:
        return False
