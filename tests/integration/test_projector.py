"""The projector on real databases: state, conversion, journeys and credits, idempotently."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import (
    CampaignCostDayRow,
    CreditRow,
    DealAttributionRow,
    DealRow,
)
from services.core.settings import Settings
from tests.support import builders as b
from tests.support import reference

pytestmark = pytest.mark.integration
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def scenario() -> list[dict]:
    return [
        b.campaign("ads", "paid_search"),
        b.campaign("mail", "email"),
        b.campaign("web", "webinar"),
        b.contact("alice", "acme"),
        b.contact("bob", "acme"),
        b.touch("t1", "ads", -30, contact="alice", lead=True),
        b.touch("t2", "mail", -20, contact="bob"),
        b.touch("t3", "web", -5, account="acme"),
        b.touch("t-other", "ads", -5, account="globex"),
        b.touch("t-late", "ads", 3, contact="alice"),  # after the close: not in the journey
        b.deal_created("d1", "acme", "1000.00", -10),
        b.deal_status("d1", "closed_won", 1),
        b.deal_created("d2", "globex", "500.00", -10, currency="EUR"),
        b.deal_status("d2", "closed_won", 1),  # no EUR rate: unconverted
        b.cost("cost1", "ads", "300.00", "2026-02-01", "2026-02-03"),
    ]


def apply(url: str, dicts: list[dict], settings: Settings) -> None:
    sessions = make_sessionmaker(make_engine(url))
    with sessions() as session, session.begin():
        sync_builtin_models(session, settings)
        apply_events(session, b.events(*dicts), settings=settings, now=NOW)


def credits(url: str, model: str) -> dict[str, int]:
    sessions = make_sessionmaker(make_engine(url))
    with sessions() as session:
        rows = session.execute(
            select(CreditRow.campaign_id, func.sum(CreditRow.credit_minor))
            .where(CreditRow.model_id == model)
            .group_by(CreditRow.campaign_id)
        )
        return {c: int(s) for c, s in rows if s}


def test_scenario_credits_and_conversion(db_url: str) -> None:
    settings = Settings(_env_file=None, database_url=db_url)
    apply(db_url, scenario(), settings)
    assert credits(db_url, "first_touch") == {"ads": 100000}
    assert credits(db_url, "last_touch") == {"web": 100000}
    assert credits(db_url, "linear") == {"ads": 33334, "mail": 33333, "web": 33333}
    assert credits(db_url, "position_based") == {"ads": 40000, "mail": 20000, "web": 40000}
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions() as session:
        d2 = session.get(DealRow, "d2")
        assert d2 is not None and d2.conversion == "unconverted" and d2.reporting_minor is None
        days = session.scalars(
            select(CampaignCostDayRow.cost_minor).order_by(CampaignCostDayRow.day)
        )
        assert list(days) == [10000, 10000, 10000]
    # A rate arriving later converts d2 (1 EUR = 1.1 USD) and credits globex's touch.
    apply(db_url, [b.fx("2026-03-01", "EUR", "USD", "1.1")], settings)
    assert credits(db_url, "linear") == {"ads": 33334 + 55000, "mail": 33333, "web": 33333}


def test_replay_and_duplicates_change_nothing(db_url: str) -> None:
    settings = Settings(_env_file=None, database_url=db_url)
    events = scenario()
    apply(db_url, list(reversed(events)), settings)
    before = {m: credits(db_url, m) for m in ("linear", "w_shaped", "time_decay")}
    # d1's journey is t1 (ads: first, lead), t2 (mail: opportunity), t3 (web: last).
    assert before["linear"] == {"ads": 33334, "mail": 33333, "web": 33333}
    assert before["w_shaped"] == {"ads": 60000, "mail": 30000, "web": 10000}  # .6 .3 .1
    decay = reference.compute(events).deals["d1"].credits["time_decay"]
    assert before["time_decay"] == decay and len(decay) == 3
    apply(db_url, events + events[:3], settings)
    assert {m: credits(db_url, m) for m in before} == before
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions() as session:
        n = session.scalar(
            select(func.count())
            .select_from(DealAttributionRow)
            .where(DealAttributionRow.model_id == "linear")
        )
        assert n == 1


def test_reopen_removes_credits_and_merge_moves_touches(db_url: str) -> None:
    settings = Settings(_env_file=None, database_url=db_url)
    apply(db_url, scenario(), settings)
    apply(db_url, [b.deal_status("d1", "reopened", 2)], settings)
    assert credits(db_url, "linear") == {}
    apply(
        db_url,
        [
            b.deal_status("d1", "closed_won", 4),
            b.contact("zed", "other", days=-80),
            b.touch("t-zed", "mail", -3, contact="zed"),
        ],
        settings,
    )
    # Closed at day 4 now: alice's touch on day 3 joins the journey; zed is another account's.
    assert credits(db_url, "linear") == {"ads": 50000, "mail": 25000, "web": 25000}
    merge = {
        "event_id": "m1",
        "type": "contact.merged",
        "occurred_at": b.at(0),
        "contact_id": "alice",
        "merged_contact_id": "zed",
    }
    apply(db_url, [merge], settings)
    assert credits(db_url, "linear") == {"ads": 40000, "mail": 40000, "web": 20000}
