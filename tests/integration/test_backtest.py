"""The lead definition backtest over HTTP, on PostgreSQL and SQLite (contract §7).

The worker's own code projects the story (``apply_events``); definitions are stored through
the API. Every expected number is worked out by hand below. All amounts USD (the reporting
currency); times are UTC midnights unless said; lookback 180 days; grade prior strength 10.

Training deals, decided in January (before the range [2026-02-01, 2026-05-01)):
- T1 account TA (industry software): touch webinar Jan 4, created Jan 5, won Jan 20.
- T2 account TB (industry retail): touch email Jan 5, created Jan 6, lost Jan 21.

Fits by creation month (walk-forward: deals decided before the month's first instant):
- 2026-01: nothing decided before Jan 1: no Markov fit, no grade fit.
- 2026-02: T1, T2. Markov: webinar → conversion, email → null, so a journey ending in webinar
  scores 1, in email 0, and one of channels never seen scores the start state's 1/2.
  Grade: base 1/2, r = (w + 5) / (n + 10): software 6/11 → ln(6/5) = +0.182322, retail 5/11 →
  −0.182322; samples' raws [−0.182322, +0.182322], nearest rank: A cut-off +0.182322 (2nd of
  2), B and C −0.182322 (1st). So software → A, nothing known (raw 0) → B, retail → B.
- 2026-03: T1, T2 and D4 (won Feb 20; account A4: software, contact title CFO). Base 2/3, the
  prior adds 20/3 won of 10: software n=2 w=2 → r = 13/18 → ln(13/10) = +0.262364; retail →
  ln(10/13) = −0.262364; contact.title CFO n=1 w=1 → r = 23/33 → ln(23/20) = +0.139762. Raws
  sorted [−0.262364, +0.262364, +0.402126]: A cut-off 0.402126 (3rd of 3), B 0.262364 (2nd).
  So software alone is now B; software with a CFO contact is A.

Deals in range (C = created, W = won / L = lost):
- D1 A1 (software; contact a1 title CFO): touch webinar Feb 3 12:00 by a1; C Feb 10; W Mar 15,
  3000.00.
- D2 A2 (software; contact a2 without title): touch webinar Feb 4; C Feb 12; a2 gets title VP
  Feb 20 and A2 is touched again Feb 25 — it meets "A + title" only after creation; W Mar 20,
  2000.00.
- D3 A3 (retail; contact a3 title CTO): touch email Feb 5; C Feb 15; L Mar 10.
- D4 A4 (software; contact a4 title CFO): touch webinar Jan 24; C Jan 25 (January: no fits);
  W Feb 20, 5000.00.
- D5 A5 (software; its own title Founder): touch webinar Feb 6; C Feb 8; L Mar 5.
- D6 A6 (health, never seen; contact a6 title CEO): touch paid_search (never seen) Feb 7;
  C Feb 9; W Apr 10, 1500.00.
- D7 A7 (software; contact a7 title VP): touch webinar Mar 3; C Mar 5 (March fits); W Apr 5,
  4000.00.
- D8 A1 again: C Mar 20 (March fits: software + CFO → A); L Apr 20.
Decided 8, won 5 (D1 D2 D4 D6 D7): base rate 5/8 = 0.625; won revenue 15500.00.

"grade-a" v2 {min_grade A, required title}: D1 (Feb 3 12:00), D5 (Feb 6), D8 (Feb 3 12:00 —
A1's first moment, judged with March's fits) qualify. D2 misses (no title before creation), D3
is B, D4 has no grade, D6 is B, D7 is B under the March refit (it would be A under February's).
Qualified 3, won 1: 1/3 = 0.3333, lift (1/3)/(5/8) = 8/15 = 0.5333; accounts A1, A5; caught
3000.00 of 15500.00 = 0.1935; 1 of 5 won deals = 0.2; days to won: D1 Feb 3 12:00 → Mar 15 =
39.5. Missed by closed_at: D4, D2, D7, D6.

"engaged" v1 {min_score 0.5}: D1 (Feb 3 12:00, webinar 1), D2 (Feb 4), D5 (Feb 6), D6 (Feb 7,
unseen channel 1/2), D7 (Mar 3), D8 (Feb 3 12:00); D3 scores 0, D4 has no score. Qualified 6,
won 4: 0.6667, lift (2/3)/(5/8) = 16/15 = 1.0667; accounts A1 A2 A5 A6 A7 = 5; caught 10500.00
= 21/31 = 0.6774; 4/5 = 0.8; days to won 39.5, 44, 62, 33 → median (39.5 + 44) / 2 = 41.75.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.settings import Settings
from tests.support.builders import campaign, events

pytestmark = pytest.mark.integration

NOW = datetime(2026, 6, 1, tzinfo=UTC)
Client = tuple[TestClient, dict[str, str]]


def ts(day: str, hour: int = 0) -> str:
    return f"2026-{day}T{hour:02d}:00:00Z"


def account(aid: str, **attributes: str) -> dict[str, Any]:
    return {
        "event_id": f"acc-{aid}",
        "type": "account.upserted",
        "occurred_at": ts("01-02"),
        "account_id": aid,
        "attributes": attributes,
    }


def person(cid: str, aid: str, day: str = "01-03", **attributes: str) -> dict[str, Any]:
    return {
        "event_id": f"p-{cid}-{day}",
        "type": "contact.upserted",
        "occurred_at": ts(day),
        "contact_id": cid,
        "account_id": aid,
        "attributes": attributes,
    }


def touch(eid: str, cid: str, day: str, *, hour: int = 0, **who: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "touch",
        "occurred_at": ts(day, hour),
        "campaign_id": cid,
        **{f"{k}_id": v for k, v in who.items()},
    }


def deal(did: str, aid: str, amount: str, created: str, outcome: str, ended: str) -> list[Any]:
    return [
        {
            "event_id": f"{did}-created",
            "type": "deal.created",
            "occurred_at": ts(created),
            "deal_id": did,
            "account_id": aid,
            "amount": amount,
            "currency": "USD",
        },
        {
            "event_id": f"{did}-{outcome}",
            "type": f"deal.closed_{outcome}",
            "occurred_at": ts(ended),
            "deal_id": did,
        },
    ]


def story() -> list[dict[str, Any]]:
    return [
        campaign("web", "webinar"),
        campaign("mail", "email"),
        campaign("ads", "paid_search"),
        account("TA", industry="software"),
        account("TB", industry="retail"),
        touch("t-TA", "web", "01-04", account="TA"),
        touch("t-TB", "mail", "01-05", account="TB"),
        *deal("T1", "TA", "700.00", "01-05", "won", "01-20"),
        *deal("T2", "TB", "700.00", "01-06", "lost", "01-21"),
        account("A1", industry="software"),
        person("a1", "A1", title="CFO"),
        touch("t-A1", "web", "02-03", hour=12, contact="a1"),
        *deal("D1", "A1", "3000.00", "02-10", "won", "03-15"),
        account("A2", industry="software"),
        person("a2", "A2"),
        touch("t-A2", "web", "02-04", account="A2"),
        person("a2", "A2", "02-20", title="VP"),
        touch("t-A2-late", "web", "02-25", account="A2"),
        *deal("D2", "A2", "2000.00", "02-12", "won", "03-20"),
        account("A3", industry="retail"),
        person("a3", "A3", title="CTO"),
        touch("t-A3", "mail", "02-05", account="A3"),
        *deal("D3", "A3", "900.00", "02-15", "lost", "03-10"),
        account("A4", industry="software"),
        person("a4", "A4", title="CFO"),
        touch("t-A4", "web", "01-24", account="A4"),
        *deal("D4", "A4", "5000.00", "01-25", "won", "02-20"),
        account("A5", industry="software", title="Founder"),
        touch("t-A5", "web", "02-06", account="A5"),
        *deal("D5", "A5", "800.00", "02-08", "lost", "03-05"),
        account("A6", industry="health"),
        person("a6", "A6", title="CEO"),
        touch("t-A6", "ads", "02-07", contact="a6"),
        *deal("D6", "A6", "1500.00", "02-09", "won", "04-10"),
        account("A7", industry="software"),
        person("a7", "A7", title="VP"),
        touch("t-A7", "web", "03-03", account="A7"),
        *deal("D7", "A7", "4000.00", "03-05", "won", "04-05"),
        *deal("D8", "A1", "600.00", "03-20", "lost", "04-20"),
    ]


@pytest.fixture()
def api(db_url: str) -> Iterator[Client]:
    settings = Settings(_env_file=None, database_url=db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        ordered = story()
        # Two batches, the second first: arrival order must not matter.
        apply_events(session, events(*ordered[20:]), settings=settings, now=NOW)
        apply_events(session, events(*ordered[:20]), settings=settings, now=NOW)
        key = create_key(session, name="analyst", scopes=["read", "admin"])
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(settings)) as client:
        for name, rule in [
            ("grade-a", {"min_grade": "A"}),
            ("grade-a", {"min_grade": "A", "required_attributes": ["title"]}),
            ("engaged", {"min_score": 0.5}),
        ]:
            stored = client.put(f"/v1/lead-definitions/{name}", json={"mql": rule}, headers=headers)
            assert stored.status_code == 201, stored.text
        yield client, headers
    sessions.kw["bind"].dispose()


RANGE = {"from": "2026-02-01", "to": "2026-05-01"}


def test_a_definition_is_backtested_on_hand_worked_numbers(api: Client) -> None:
    client, headers = api
    response = client.get("/v1/lead-definitions/grade-a/backtest", params=RANGE, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["currency"]) == ("2026-02-01", "2026-05-01", "USD")
    [grade_a] = body["definitions"]
    missed = grade_a.pop("missed")
    assert grade_a == {
        "id": "grade-a",
        "version": 2,
        "rule": {
            "mql": {"min_score": None, "min_grade": "A", "required_attributes": ["title"]},
            "sales_ready_stages": ["mql", "sql", "opportunity", "customer"],
        },
        "decided_deals": 8,
        "won_deals": 5,
        "base_win_rate": 0.625,
        "qualified_deals": 3,
        "qualified_won": 1,
        "qualified_win_rate": 0.3333,
        "lift": 0.5333,
        "qualified_accounts": 2,
        "won_revenue": "15500.00",
        "caught_won_revenue": "3000.00",
        "share_of_won_revenue": 0.1935,
        "share_of_won_deals": 0.2,
        "median_days_to_won": 39.5,
        "missed_total": 4,
    }
    assert missed == [
        {
            "deal_id": "D4",
            "account_id": "A4",
            "amount": "5000.00",
            "created_at": "2026-01-25T00:00:00Z",
            "closed_at": "2026-02-20T00:00:00Z",
            "reasons": ["no grade yet (needs A)"],
        },
        {
            # Its account met the rule once a2 had a title (Feb 20), after D2 was created.
            "deal_id": "D2",
            "account_id": "A2",
            "amount": "2000.00",
            "created_at": "2026-02-12T00:00:00Z",
            "closed_at": "2026-03-20T00:00:00Z",
            "reasons": ["missing attribute title"],
        },
        {
            "deal_id": "D7",
            "account_id": "A7",
            "amount": "4000.00",
            "created_at": "2026-03-05T00:00:00Z",
            "closed_at": "2026-04-05T00:00:00Z",
            "reasons": ["grade B below A"],
        },
        {
            "deal_id": "D6",
            "account_id": "A6",
            "amount": "1500.00",
            "created_at": "2026-02-09T00:00:00Z",
            "closed_at": "2026-04-10T00:00:00Z",
            "reasons": ["grade B below A"],
        },
    ]
    assert body["fits"] == [
        {
            "month": "2026-01",
            "decided_before": "2026-01-01T00:00:00Z",
            "training_deals": 0,
            "won": 0,
            "markov": False,
            "grade": False,
        },
        {
            "month": "2026-02",
            "decided_before": "2026-02-01T00:00:00Z",
            "training_deals": 2,
            "won": 1,
            "markov": True,
            "grade": True,
        },
        {
            "month": "2026-03",
            "decided_before": "2026-03-01T00:00:00Z",
            "training_deals": 3,
            "won": 2,
            "markov": True,
            "grade": True,
        },
    ]


FIGURES = [
    "version",
    "qualified_deals",
    "qualified_won",
    "qualified_win_rate",
    "lift",
    "qualified_accounts",
    "caught_won_revenue",
    "share_of_won_revenue",
    "share_of_won_deals",
    "median_days_to_won",
    "missed_total",
]


def test_two_definitions_side_by_side_and_an_older_version(api: Client) -> None:
    client, headers = api
    body = client.get(
        "/v1/lead-definitions/grade-a/backtest",
        params={**RANGE, "compare": "engaged"},
        headers=headers,
    ).json()
    grade_a, engaged = body["definitions"]
    assert [grade_a[k] for k in FIGURES] == [
        2,
        3,
        1,
        0.3333,
        0.5333,
        2,
        "3000.00",
        0.1935,
        0.2,
        39.5,
        4,
    ]
    assert engaged["id"] == "engaged"
    assert [engaged[k] for k in FIGURES] == [
        1,
        6,
        4,
        0.6667,
        1.0667,
        5,
        "10500.00",
        0.6774,
        0.8,
        41.75,
        1,
    ]
    assert [(m["deal_id"], m["reasons"]) for m in engaged["missed"]] == [
        ("D4", ["no score yet (needs 0.5)"])
    ]
    assert (engaged["decided_deals"], engaged["won_revenue"]) == (8, "15500.00")
    # Version 1 of grade-a needs no title: D2 is caught at its Feb 4 touch (grade A then).
    old = client.get(
        "/v1/lead-definitions/engaged/backtest",
        params={**RANGE, "compare": "grade-a@1"},
        headers=headers,
    ).json()["definitions"][1]
    assert (old["id"], old["version"], old["qualified_deals"], old["qualified_won"]) == (
        "grade-a",
        1,
        4,
        2,
    )
    assert old["caught_won_revenue"] == "5000.00"


def test_the_range_selects_deals_by_their_decision(api: Client) -> None:
    client, headers = api
    # [Mar 1, Apr 1): D1 and D2 won, D3 and D5 lost.
    body = client.get(
        "/v1/lead-definitions/engaged/backtest",
        params={"from": "2026-03-01", "to": "2026-04-01", "version": "1"},
        headers=headers,
    ).json()
    [engaged] = body["definitions"]
    assert (engaged["decided_deals"], engaged["won_deals"], engaged["qualified_deals"]) == (4, 2, 3)
    assert (engaged["won_revenue"], engaged["caught_won_revenue"]) == ("5000.00", "5000.00")
    assert engaged["median_days_to_won"] == 41.75  # D1 39.5 and D2 44
    assert [f["month"] for f in body["fits"]] == ["2026-02"]
    empty = client.get(
        "/v1/lead-definitions/engaged/backtest", params={"from": "2027-01-01"}, headers=headers
    ).json()
    [nothing] = empty["definitions"]
    assert (nothing["decided_deals"], nothing["won_revenue"], nothing["missed"]) == (0, "0.00", [])
    assert (nothing["base_win_rate"], nothing["lift"], nothing["median_days_to_won"]) == (
        None,
        None,
        None,
    )
    assert (empty["to"], empty["fits"]) == (None, [])


def test_csv_is_one_row_per_definition(api: Client) -> None:
    client, headers = api
    response = client.get(
        "/v1/lead-definitions/grade-a/backtest",
        params={**RANGE, "compare": "engaged"},
        headers={**headers, "Accept": "text/csv"},
    )
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0].startswith("from,to,currency,definition_id,version,decided_deals,won_deals")
    assert lines[0].endswith(",median_days_to_won,missed_total")
    assert lines[1].startswith("2026-02-01,2026-05-01,USD,grade-a,2,8,5,0.625,3,1,0.3333,0.5333,2")
    assert lines[2].startswith("2026-02-01,2026-05-01,USD,engaged,1,8,5,0.625,6,4,0.6667,1.0667,5")
    assert len(lines) == 3


def test_unknown_definitions_versions_and_bad_parameters(api: Client) -> None:
    client, headers = api
    url = "/v1/lead-definitions/grade-a/backtest"
    missing = client.get("/v1/lead-definitions/nobody/backtest", headers=headers)
    assert missing.status_code == 404
    assert "nobody" in missing.json()["detail"]
    no_version = client.get(url, params={"version": "9"}, headers=headers)
    assert no_version.status_code == 404
    assert no_version.json()["detail"] == "lead definition 'grade-a' has no version 9"
    other = client.get(url, params={"compare": "engaged@7"}, headers=headers)
    assert other.status_code == 404
    assert other.json()["detail"] == "lead definition 'engaged' has no version 7"
    for params, field in [
        ({"compare": "Not An Id"}, "query.compare"),
        ({"compare": "engaged@x"}, "query.compare"),
        ({"version": "0"}, "query.version"),
        ({"version": "3318113803"}, "query.version"),  # past the column's range: not a 500
        ({"compare": "engaged@3318113803"}, "query.compare"),
        ({"from": "2026-02-30"}, "query.from"),
        ({"from": "2026-03-01", "to": "2026-03-01"}, "query.to"),
    ]:
        bad = client.get(url, params=params, headers=headers)
        assert bad.status_code == 422, params
        assert [e["field"] for e in bad.json()["errors"]] == [field], params
