"""Late arrivals (contract §1): each recomputes exactly the deals it affects, and no others,
and the result equals an ordered, single delivery (the independent reference)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from services.attribution.projector import BatchResult, apply_events
from services.attribution.registry import sync_builtin_models
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import CreditRow
from services.core.settings import Settings
from tests.support import builders as b
from tests.support import reference

pytestmark = pytest.mark.integration
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def base() -> list[dict[str, Any]]:
    return [
        b.campaign("ads", "paid_search"),
        b.campaign("mail", "email"),
        b.campaign("web", "webinar"),
        b.contact("alice", "acme"),
        b.contact("bob", "acme"),
        b.contact("zed", "other"),
        b.contact("gina", "globex"),
        b.touch("t1", "ads", -30, contact="alice", lead=True),
        b.touch("t2", "mail", -20, contact="bob"),
        b.touch("t3", "web", -12, contact="gina"),
        b.touch("t4", "mail", -8, contact="zed"),
        b.deal_created("d1", "acme", "1000.00", -10),
        b.deal_status("d1", "closed_won", 1),
        b.deal_created("d2", "globex", "800.00", -10, currency="EUR"),
        b.deal_status("d2", "closed_won", 1),
        b.deal_created("d3", "acme", "50.00", -5),
        b.fx("2026-02-01", "EUR", "USD", "1.2"),
    ]


class Pipeline:
    def __init__(self, url: str) -> None:
        self.settings = Settings(_env_file=None, database_url=url)
        self.sessions = make_sessionmaker(make_engine(url))
        self.delivered: list[dict[str, Any]] = []

    def deliver(self, *events: dict[str, Any]) -> BatchResult:
        self.delivered += events
        with self.sessions() as session, session.begin():
            sync_builtin_models(session, self.settings)
            return apply_events(session, b.events(*events), settings=self.settings, now=NOW)

    def assert_matches_ordered_delivery(self) -> None:
        ref = reference.compute(self.delivered)
        with self.sessions() as session:
            got: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
            for row in session.scalars(select(CreditRow)):
                per = got[(row.model_id, row.deal_id)]
                per[row.campaign_id] = per.get(row.campaign_id, 0) + row.credit_minor
        # No fit runs here: the worker computes the positional models and time decay only.
        expected = {
            (m, d.deal_id): dict(d.credits[m])
            for d in ref.deals.values()
            for m in reference.MODELS
            if m in d.credits
        }
        assert expected, "no credited deal: the comparison would prove nothing"
        assert dict(got) == expected


@pytest.fixture()
def pipe(db_url: str) -> Pipeline:
    pipe = Pipeline(db_url)
    pipe.deliver(*base())
    pipe.assert_matches_ordered_delivery()
    return pipe


def test_touch_arriving_after_the_close(pipe: Pipeline) -> None:
    result = pipe.deliver(b.touch("late", "web", -2, contact="alice"))
    assert result.affected == {"d1"}
    pipe.assert_matches_ordered_delivery()


def test_reopened_deal_loses_its_credits(pipe: Pipeline) -> None:
    result = pipe.deliver(b.deal_status("d1", "reopened", 3))
    assert result.affected == {"d1"}
    pipe.assert_matches_ordered_delivery()
    with pipe.sessions() as session:
        assert not session.scalars(select(CreditRow).where(CreditRow.deal_id == "d1")).all()


def test_amount_changed_after_close(pipe: Pipeline) -> None:
    result = pipe.deliver(b.deal_status("d1", "updated", 5, amount="1234.56", currency="USD"))
    assert result.affected == {"d1"}
    pipe.assert_matches_ordered_delivery()


def test_late_merge_moves_touches(pipe: Pipeline) -> None:
    merge = {
        "event_id": "m1",
        "type": "contact.merged",
        "occurred_at": b.at(-1),
        "contact_id": "alice",
        "merged_contact_id": "zed",
    }
    result = pipe.deliver(merge)
    assert result.affected == {"d1"}
    pipe.assert_matches_ordered_delivery()


def test_contact_moving_account(pipe: Pipeline) -> None:
    result = pipe.deliver(b.contact("bob", "globex", days=-1, eid="bob-moves"))
    assert result.affected == {"d1", "d2"}
    pipe.assert_matches_ordered_delivery()


def test_stale_contact_update_changes_nothing(pipe: Pipeline) -> None:
    # An update that occurred before the current one arrives late: state must not change.
    pipe.deliver(b.contact("bob", "globex", days=-1, eid="bob-moves"))
    result = pipe.deliver(b.contact("bob", "acme", days=-50, eid="bob-old"))
    pipe.assert_matches_ordered_delivery()
    assert result.affected <= {"d1", "d2"}


def test_fx_rate_after_the_deal(pipe: Pipeline) -> None:
    result = pipe.deliver(b.fx("2026-03-02", "EUR", "USD", "1.1"))  # d2 closed on 03-02
    assert result.affected == {"d2"}
    pipe.assert_matches_ordered_delivery()
    # A rate dated after every close changes no deal.
    assert pipe.deliver(b.fx("2026-04-01", "EUR", "USD", "1.3")).affected == set()


def test_deal_in_the_reporting_currency_ignores_rates(pipe: Pipeline) -> None:
    assert pipe.deliver(b.fx("2026-01-01", "GBP", "USD", "1.3")).affected == set()


def test_corrected_rate_for_the_same_date(pipe: Pipeline) -> None:
    pipe.deliver(b.fx("2026-03-02", "EUR", "USD", "1.1", eid="fx-a"))
    # A correction of that day's rate (same key, occurred later) must re-convert d2.
    corrected = b.fx("2026-03-02", "EUR", "USD", "1.15", eid="fx-b")
    corrected["occurred_at"] = "2026-03-02T18:00:00Z"
    assert pipe.deliver(corrected).affected == {"d2"}
    pipe.assert_matches_ordered_delivery()
    # The inverse pair on the same date loses to the direct one: the credits must not move.
    pipe.deliver(b.fx("2026-03-02", "USD", "EUR", "0.5", eid="fx-c"))
    pipe.assert_matches_ordered_delivery()
