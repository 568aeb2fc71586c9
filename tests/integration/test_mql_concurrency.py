"""Two workers qualifying at once on PostgreSQL emit one MQL per contact per qualification.

Each "worker" is a thread with its own engine and its own MQL producer (a ``Worker``'s
``_send_mqls``) running the worker's own lead pass (``maintain_leads``: qualify, then publish
the outbox) against a real PostgreSQL and the real broker. A barrier releases both at once,
and one of them starts a little later in some rounds (0 to 20 ms), so the second pass meets
the first in different phases (qualifying, committing, publishing, done).

Story: ``tests.integration.test_grade``'s decided deals, so the grade fits as worked out there:
an open account with industry software and a contact titled CFO is graded A. The open
accounts: E (test_mql_emission's: e1 CFO at lead, e2 at sql, e3 disqualified, e4 no stage)
and G01..G12 (software; gNN-a CFO at lead, gNN-b no stage, no title). Each round activates a
new definition (grade A and a title), so every open account newly meets it: one qualification
per account, and an MQL for each contact neither sales-ready nor disqualified (MQL events are
not consumed here, so the stages stay as they are): e1, e4, and both contacts of every G,
2 + 24 = 26 per round, each published exactly once on the events topic.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.api.app import create_app
from services.attribution.maintenance import maintain_leads, maintain_models
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.attribution.worker import Worker
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import MqlRow
from services.core.kafka import ensure_topics
from tests.conftest import make_settings
from tests.integration.test_grade import NOW, account, person, story
from tests.integration.test_ingest import read_topic
from tests.integration.test_mql_emission import staged
from tests.support.builders import events, touch
from tests.support.infra import postgres_database

pytestmark = pytest.mark.integration
ROUNDS = 20
LATE_S = (0.0, 0.001, 0.005, 0.02)  # how much later one of the two starts, by round
GROUPS = [f"G{n:02d}" for n in range(1, 13)]


@pytest.fixture()
def pg() -> Iterator[str]:
    with postgres_database("closedloop_mqlrace") as url:
        yield url


def opening() -> list[dict[str, Any]]:
    """The story with E's contacts at their stages, plus the G accounts."""
    out = [e for e in story() if e["event_id"] != "e1"] + [
        staged("e1", -20, "lead", title="CFO"),
        staged("e2", -19, "sql"),
        staged("e3", -18, "disqualified"),
        staged("e4", -17, None),
    ]
    for g in GROUPS:
        lead = person(f"{g.lower()}-a", g, -20, f"{g}-a", title="CFO")
        lead["lifecycle_stage"] = "lead"
        out += [
            account(g, -30, f"acc-{g}", industry="software"),
            lead,
            person(f"{g.lower()}-b", g, -19, f"{g}-b"),
            touch(f"t-{g}", "c-web", 15, account=g),
        ]
    return out


EXPECTED = {("E", "e1"), ("E", "e4")} | {
    (g, f"{g.lower()}-{x}") for g in GROUPS for x in ("a", "b")
}


def test_two_workers_qualifying_at_once_emit_each_mql_once(broker: str, pg: str) -> None:
    settings = make_settings(database_url=pg, bootstrap=broker, lookback_days=3650)
    ensure_topics(settings)
    sessions = make_sessionmaker(make_engine(pg))
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        apply_events(session, events(*opening()), settings=settings, now=NOW)
        admin = create_key(session, name="marketing-ops", scopes=["admin", "read"])
    maintain_models(sessions, settings, schedule=False)  # the grade's first fit
    workers = [Worker(settings, sessions=make_sessionmaker(make_engine(pg))) for _ in range(2)]
    overlapped = 0
    with TestClient(create_app(settings)) as client:
        for n in range(ROUNDS):
            put = client.put(
                f"/v1/lead-definitions/round-{n:02d}",
                json={"mql": {"min_grade": "A", "required_attributes": ["title"]}, "active": True},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert put.status_code == 201, put.text
            published, spans = race(workers, late=(n % 2, LATE_S[n // 2 % len(LATE_S)]))
            assert sum(published) == len(EXPECTED), f"round {n}: {published}"
            overlapped += max(s for s, _ in spans) < min(e for _, e in spans)
    for worker in workers:
        worker._close_mql_producer()
        worker.sessions.kw["bind"].dispose()

    with sessions() as session:
        rows = session.execute(
            select(MqlRow.definition_id, MqlRow.account_id, MqlRow.contact_id, MqlRow.episode)
        ).all()
        ids = set(session.scalars(select(MqlRow.event_id)))
    sessions.kw["bind"].dispose()
    assert sorted(rows) == sorted(
        (f"round-{n:02d}", a, c, 1) for n in range(ROUNDS) for a, c in EXPECTED
    )
    on_topic = Counter(
        orjson.loads(r.value)["event_id"] for r in read_topic(broker, settings.events_topic)
    )
    assert set(on_topic) == ids
    assert [k for k, times in on_topic.items() if times != 1] == []
    assert overlapped >= ROUNDS // 2  # the passes really ran at the same time


def race(
    workers: list[Worker], *, late: tuple[int, float]
) -> tuple[list[int], list[tuple[float, float]]]:
    """Run both workers' lead passes at once; return what each published and when it ran."""
    barrier = threading.Barrier(len(workers))
    published = [0] * len(workers)
    spans = [(0.0, 0.0)] * len(workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        worker = workers[i]
        try:
            barrier.wait(timeout=10)
            if i == late[0]:
                time.sleep(late[1])
            start = time.perf_counter()
            published[i] = maintain_leads(worker.sessions, worker.settings, worker._send_mqls)
            spans[i] = (start, time.perf_counter())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    if errors:
        raise errors[0]
    return published, spans
