"""MQL emission through the real broker and worker: once per contact per qualification.

Story: ``tests.integration.test_grade``'s decided deals (so the grade fits as worked out there)
plus open account E (software, DE) with contacts e1 (CFO, lead), e2 (sql), e3 (disqualified)
and e4 (no stage). The active definition asks for grade A and a title: E is graded A (see
test_grade) and e1 has a title, so E qualifies. With the default sales-ready stages (mql, sql,
opportunity, customer) the MQLs go to e1 and e4 only: e2 is already sales-ready and e3 is
disqualified. Then e1's title is cleared (E no longer qualifies: its episode ends), set again
(episode 2), and a new contact e5 (lead) has joined meanwhile: only e5 gets an MQL, e1 and e4
being at ``mql`` already.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from services.api.app import create_app
from services.attribution.maintenance import maintain_leads, maintain_models
from services.attribution.worker import Worker
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import ContactRow, LeadQualificationRow, LifecycleChangeRow, MqlRow
from tests.conftest import make_settings
from tests.integration.test_grade import person, story
from tests.support.builders import at
from tests.support.streams import publish

pytestmark = pytest.mark.integration


def staged(cid: str, days: float, stage: str | None, **attributes: str) -> dict[str, Any]:
    e = person(cid, "E", days, f"{cid}-{days}", **attributes)
    if stage:
        e["lifecycle_stage"] = stage
    return e


def test_mqls_are_emitted_once_per_contact_per_qualification(broker: str, db_url: str) -> None:
    settings = make_settings(
        database_url=db_url, bootstrap=broker, lookback_days=3650, lead_interval_s=3600
    )
    people = [
        staged("e1", -20, "lead", title="CFO"),
        staged("e2", -19, "sql"),
        staged("e3", -18, "disqualified"),
        staged("e4", -17, None),
    ]
    publish(settings, [e for e in story() if e["event_id"] != "e1"] + people)
    Worker(settings).run(idle_exit_s=3)
    sessions = make_sessionmaker(make_engine(db_url))
    maintain_models(sessions, settings, schedule=False)  # the first fits, whatever the timing
    with sessions.begin() as session:
        admin = create_key(session, name="marketing-ops", scopes=["admin", "read"])
    headers = {"Authorization": f"Bearer {admin}"}
    with TestClient(create_app(settings)) as client:
        put = client.put(
            "/v1/lead-definitions/standard",
            json={"mql": {"min_grade": "A", "required_attributes": ["title"]}, "active": True},
            headers=headers,
        )
        assert put.status_code == 201, put.text

        sender = Worker(settings)
        assert maintain_leads(sessions, settings, sender._send_mqls) == 2
        assert maintain_leads(sessions, settings, sender._send_mqls) == 0  # nothing new
        with sessions.begin() as session:  # a crash after publishing, before marking
            session.execute(update(MqlRow).values(published_at=None))
        assert maintain_leads(sessions, settings, sender._send_mqls) == 2  # the same events
        sender._close_mql_producer()
        Worker(settings).run(idle_exit_s=3)

        with sessions() as session:
            mqls = session.scalars(select(MqlRow).order_by(MqlRow.contact_id)).all()
            assert [(m.contact_id, m.account_id, m.episode) for m in mqls] == [
                ("e1", "E", 1),
                ("e4", "E", 1),
            ]
            steps = session.execute(
                select(LifecycleChangeRow.contact_id, LifecycleChangeRow.event_id).where(
                    LifecycleChangeRow.stage == "mql"
                )
            ).all()
            assert sorted(steps) == sorted((m.contact_id, m.event_id) for m in mqls)
            stages = dict(
                session.execute(select(ContactRow.contact_id, ContactRow.lifecycle_stage)).all()
            )
            assert {c: stages[c] for c in ("e1", "e2", "e3", "e4")} == {
                "e1": "mql",
                "e2": "sql",
                "e3": "disqualified",
                "e4": "mql",
            }

        listed = client.get("/v1/reports/mqls", headers=headers).json()
        assert sorted((r["contact_id"], r["grade"], r["episode"]) for r in listed["rows"]) == [
            ("e1", "A", 1),
            ("e4", "A", 1),
        ]

        # The title is cleared: E stops qualifying, its episode ends.
        publish(settings, [staged("e1", -2, None, title=""), staged("e5", -1, "lead")])
        Worker(settings).run(idle_exit_s=3)
        assert maintain_leads(sessions, settings, sender._send_mqls) == 0
        # The title comes back: episode 2, and only the new contact below mql gets an MQL.
        publish(settings, [staged("e1", 1, None, title="CFO")])
        Worker(settings).run(idle_exit_s=3)
        assert maintain_leads(sessions, settings, sender._send_mqls) == 1
        sender._close_mql_producer()
        with sessions() as session:
            episodes = session.execute(
                select(LeadQualificationRow.episode, LeadQualificationRow.ended_at.is_(None))
                .where(LeadQualificationRow.account_id == "E")
                .order_by(LeadQualificationRow.episode)
            ).all()
            assert [tuple(e) for e in episodes] == [(1, False), (2, True)]
            latest = session.scalars(select(MqlRow).where(MqlRow.episode == 2)).all()
            assert [m.contact_id for m in latest] == ["e5"]
    assert datetime.now(UTC) > datetime.fromisoformat(at(1).replace("Z", "+00:00"))
