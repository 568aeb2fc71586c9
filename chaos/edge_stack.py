"""The pipeline the edge scenarios (hostile input, overload) run against, and what they read.

A fresh bundled broker and PostgreSQL database, then ingest, one worker and the read API as
real processes (``closedloop ingest|worker|api``) on loopback, with every webhook provider
configured (the secrets below), so a correctly signed hostile body really reaches its parser.
Counting reads the ``events`` table directly: an event is counted when its ``event_id`` is
stored, and the table's primary key makes a second copy impossible, so "counted twice" is
checked against the ledger by comparing totals (rows stored versus distinct ids acknowledged).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from sqlalchemy import Engine, text

from bench.common import make_key
from services.core.broker import free_port
from services.core.db.engine import make_engine
from tests.support.infra import postgres_database, running_broker
from tests.support.processes import services

# Webhook credentials the stack is configured with (each provider's own scheme).
GENERIC_SECRET = "whsec_Y2hhb3MtaG9zdGlsZS1nZW5lcmljLXNlY3JldA=="
HUBSPOT_SECRET = "chaos-hubspot-client-secret"
PIPEDRIVE_BASIC = "chaos:pipedrive-password"
SEGMENT_SECRET = "chaos-segment-shared-secret"
SALESFORCE_ORG = "00D5w000004qGTO"  # the organisation of the recorded Salesforce fixtures
PROVIDER_SECRETS = {
    "generic": GENERIC_SECRET,
    "hubspot": HUBSPOT_SECRET,
    "pipedrive": PIPEDRIVE_BASIC,
    "segment": SEGMENT_SECRET,
    "salesforce": "",
}


@dataclass
class Stack:
    """A running pipeline: its URLs, an ingest key, its database and its processes."""

    ingest_url: str
    api_url: str
    key: str
    database_url: str
    engine: Engine
    procs: dict[str, Popen[bytes]]

    def alive(self) -> dict[str, bool]:
        """Return, per process, whether it is still running."""
        return {name: proc.poll() is None for name, proc in self.procs.items()}


@contextmanager
def edge_stack(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Run broker, database, ingest, worker and API; stop and drop them all afterwards."""
    with running_broker() as bootstrap, postgres_database("closedloop_chaos_edge") as db:
        key = make_key(db, ["ingest", "read"])
        ingest_port, api_port = free_port(), free_port()
        tag = uuid.uuid4().hex[:8]
        full_env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLOSEDLOOP_EVENTS_TOPIC": f"chaos-{tag}",
            "CLOSEDLOOP_DEAD_LETTER_TOPIC": f"chaos-dead-{tag}",
            "CLOSEDLOOP_CONSUMER_GROUP": f"chaos-{tag}",
            "CLOSEDLOOP_INGEST_PORT": str(ingest_port),
            "CLOSEDLOOP_API_PORT": str(api_port),
            "CLOSEDLOOP_WEBHOOK_SECRET_GENERIC": GENERIC_SECRET,
            "CLOSEDLOOP_WEBHOOK_SECRET_HUBSPOT": HUBSPOT_SECRET,
            "CLOSEDLOOP_WEBHOOK_BASIC_PIPEDRIVE": PIPEDRIVE_BASIC,
            "CLOSEDLOOP_WEBHOOK_SECRET_SEGMENT": SEGMENT_SECRET,
            "CLOSEDLOOP_SALESFORCE_ORG_IDS": SALESFORCE_ORG,
            **(env or {}),
        }
        engine = make_engine(db)
        try:
            with services(full_env, workdir, ingest_port=ingest_port, api_port=api_port) as procs:
                yield Stack(
                    ingest_url=f"http://127.0.0.1:{ingest_port}",
                    api_url=f"http://127.0.0.1:{api_port}",
                    key=key,
                    database_url=db,
                    engine=engine,
                    procs=procs,
                )
        finally:
            engine.dispose()


def stored_ids(engine: Engine, ids: Iterable[str]) -> set[str]:
    """Return which of ``ids`` are stored in ``events``."""
    wanted = list(ids)
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(wanted), 10_000):
            rows = conn.execute(
                text("SELECT event_id FROM events WHERE event_id = ANY(:ids)"),
                {"ids": wanted[start : start + 10_000]},
            )
            found.update(row[0] for row in rows)
    return found


def table_count(engine: Engine, table: str) -> int:
    """Return the number of rows of ``table`` (``events`` or ``dead_letters``)."""
    if table not in ("events", "dead_letters"):
        raise ValueError(table)
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def wait_stored(engine: Engine, ids: set[str], *, timeout_s: float) -> tuple[set[str], float]:
    """Wait until every id of ``ids`` is stored (or the timeout); return those stored, seconds."""
    started = time.monotonic()
    found: set[str] = set()
    while True:
        found |= stored_ids(engine, ids - found)
        elapsed = time.monotonic() - started
        if found >= ids or elapsed > timeout_s:
            return found, elapsed
        time.sleep(0.25)
