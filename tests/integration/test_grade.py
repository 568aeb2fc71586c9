"""Attributes, the grade fit and the grade over HTTP, on PostgreSQL and SQLite (contract §7).

The worker's own code projects the story (``apply_events``) and fits the grade
(``maintain_models``); the expected numbers are worked out by hand below.

Decided deals (base rate 2 won / 4 = 1/2; prior strength m = 10, so the prior adds 5 won and 5
lost deals to each value: r = (w + 5) / (n + 10)):
- D1 account A won: industry software; contact a1 title CFO (sent twice: "Analyst" later in
  time arrives first, "CFO" even later arrives last — the latest in time, "CFO", wins).
- D2 account B won: industry software (set to "retail" by an OLDER event arriving later).
- D3 account C lost: industry retail.
- D4 account D lost: industry software; contact d1 title Analyst (merged into d2, which has
  no title: the survivor carries the title).
Per value: software n=3 w=2 → r=7/13 → ln(7/6); retail n=1 w=0 → 5/11 → ln(5/6);
CFO n=1 w=1 → 6/11 → ln(6/5); Analyst n=1 w=0 → ln(5/6) (logit(1/2) = 0).
Samples' raw grades: A ln(7/6)+ln(6/5), B ln(7/6), C ln(5/6), D ln(7/6)+ln(5/6); sorted, nearest
rank: A cut-off = 3rd of 4, B = 2nd, C = 1st.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.attribution.maintenance import maintain_models
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.settings import Settings
from tests.support.builders import at, campaign, deal_created, deal_status, events, touch

pytestmark = pytest.mark.integration

NOW = datetime(2026, 4, 1, tzinfo=UTC)


def r6(x: float) -> float:
    return round(x, 6)


SOFTWARE, RETAIL, CFO, ANALYST = (
    r6(math.log(7 / 6)),
    r6(math.log(5 / 6)),
    r6(math.log(6 / 5)),
    r6(math.log(5 / 6)),
)


def account(aid: str, days: float, eid: str, **attributes: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "account.upserted",
        "occurred_at": at(days),
        "account_id": aid,
        "name": f"Account {aid}",
        "attributes": attributes,
    }


def person(cid: str, aid: str | None, days: float, eid: str, **attributes: str) -> dict[str, Any]:
    e: dict[str, Any] = {
        "event_id": eid,
        "type": "contact.upserted",
        "occurred_at": at(days),
        "contact_id": cid,
        "attributes": attributes,
    }
    if aid is not None:
        e["account_id"] = aid
    return e


def story() -> list[dict[str, Any]]:
    return (
        [
            campaign("c-web", "webinar"),
            campaign("c-mail", "email"),
            account("A", -30, "acc-A", industry="software"),
            person("a1", "A", -20, "a1-late", title="Analyst"),
            person("a1", "A", -25, "a1-first"),
            person("a1", "A", -10, "a1-latest", title="CFO"),
            account("B", -30, "acc-B-new", industry="software"),
            account("B", -40, "acc-B-old", industry="retail"),  # older: arrives later, loses
            account("C", -30, "acc-C", industry="retail"),
            account("D", -30, "acc-D", industry="software"),
            person("d1", "D", -20, "d1", title="Analyst"),
            person("d2", "D", -19, "d2"),
            {
                "event_id": "merge-d",
                "type": "contact.merged",
                "occurred_at": at(-5),
                "contact_id": "d2",
                "merged_contact_id": "d1",
            },
            account("E", -30, "acc-E", industry="software", country="DE"),
            person("e1", "E", -20, "e1", title="CFO"),
        ]
        + [
            e
            for i, (deal, acct, outcome) in enumerate(
                [("D1", "A", "won"), ("D2", "B", "won"), ("D3", "C", "lost"), ("D4", "D", "lost")]
            )
            for e in (
                deal_created(deal, acct, "1000.00", 0),
                touch(f"t-{deal}-1", "c-web", -3 + i, account=acct),
                touch(f"t-{deal}-2", "c-mail", 1 + i, account=acct),
                deal_status(deal, f"closed_{outcome}", 10 + i),
            )
        ]
        + [touch("t-E-1", "c-web", 15, account="E"), touch("t-E-2", "c-mail", 16, contact="e1")]
    )


@pytest.fixture()
def api(db_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    # The leads report reads the real clock: a lookback of ten years keeps the story open.
    settings = Settings(_env_file=None, database_url=db_url, lookback_days=3650)
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        ordered = story()
        # Two batches, the second first: arrival order must not matter.
        apply_events(session, events(*ordered[8:]), settings=settings, now=NOW)
        apply_events(session, events(*ordered[:8]), settings=settings, now=NOW)
        key = create_key(session, name="read", scopes=["read"])
    maintain_models(sessions, settings, schedule=False)
    with TestClient(create_app(settings)) as client:
        yield client, {"Authorization": f"Bearer {key}"}
    sessions.kw["bind"].dispose()


def test_an_open_account_is_graded_by_hand_worked_contributions(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = api
    body = client.get("/v1/accounts/E/grade", headers=headers).json()
    assert body["base_rate"] == 0.5
    samples = sorted([SOFTWARE + CFO, SOFTWARE, RETAIL, SOFTWARE + ANALYST])
    assert body["cutoffs"] == pytest.approx(
        {"A": samples[2], "B": samples[1], "C": samples[0]}, abs=1e-6
    )
    assert body["contributions"] == [
        {
            "key": "contact.title",
            "value": "CFO",
            "contribution": CFO,
            "seen": True,
            "deals": 1,
            "won": 1,
        },
        {
            "key": "industry",
            "value": "software",
            "contribution": SOFTWARE,
            "seen": True,
            "deals": 3,
            "won": 2,
        },
        {"key": "country", "value": "DE", "contribution": 0.0, "seen": False, "deals": 0, "won": 0},
    ]
    assert body["raw"] == pytest.approx(CFO + SOFTWARE, abs=1e-9)
    assert body["letter"] == "A"  # raw equals the top sample's, at or above the A cut-off


def test_latest_value_wins_and_merged_contacts_carry_their_attributes(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = api
    a = client.get("/v1/accounts/A/grade", headers=headers).json()
    assert {(c["key"], c["value"]) for c in a["contributions"]} == {
        ("industry", "software"),
        ("contact.title", "CFO"),
    }
    b = client.get("/v1/accounts/B/grade", headers=headers).json()
    assert [(c["key"], c["value"]) for c in b["contributions"]] == [("industry", "software")]
    d = client.get("/v1/accounts/D/grade", headers=headers).json()
    assert {(c["key"], c["value"], c["contribution"]) for c in d["contributions"]} == {
        ("industry", "software", SOFTWARE),
        ("contact.title", "Analyst", ANALYST),
    }
    assert d["letter"] == "B"  # SOFTWARE + ANALYST is exactly the B cut-off (2nd of 4)


def test_unknown_account_is_404_and_leads_carry_the_grade(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = api
    missing = client.get("/v1/accounts/nobody/grade", headers=headers)
    assert missing.status_code == 404
    assert "nobody" in missing.json()["detail"]
    leads = client.get(
        "/v1/reports/leads", params={"min_grade": "A", "sort": "grade"}, headers=headers
    ).json()
    assert [(r["account_id"], r["grade"]) for r in leads["rows"]] == [("E", "A")]
    assert leads["rows"][0]["raw_grade"] == pytest.approx(CFO + SOFTWARE, abs=1e-9)
    assert leads["grade_snapshot"]["fit_id"] > 0
