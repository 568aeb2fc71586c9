"""Real infrastructure for tests: the bundled Kafka-protocol broker and throwaway databases."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from services.core.broker import free_port, start_bundled_broker, wait_for_port
from services.core.db.migrate import upgrade

PG_ADMIN_DSN = os.environ.get("CLOSEDLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

__all__ = ["free_port", "postgres_database", "running_broker", "sqlite_database", "wait_for_port"]


@contextmanager
def running_broker(port: int | None = None) -> Iterator[str]:
    """Run the bundled broker (in-memory) on a free loopback port; yield its bootstrap."""
    port = port or free_port()
    proc = start_bundled_broker(port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def postgres_database(prefix: str = "closedloop_test") -> Iterator[str]:
    """Create a uniquely named PostgreSQL database migrated to head; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_database(directory: Path) -> Iterator[str]:
    """Create a SQLite file migrated to head in ``directory``; yield its URL."""
    url = f"sqlite:///{directory / ('closedloop-' + uuid.uuid4().hex[:8] + '.db')}"
    upgrade(url)
    yield url
