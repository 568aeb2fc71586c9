"""Property: for any arrival order, batching and duplication of a CRM history, the worker's
incremental path (apply_events, batch by batch, through the database) ends with exactly the
credits of the independent reference (tests/support/reference.py) over the history: every
positional model and time decay, and markov and shapley once refitted after the last batch
(also when an earlier fit saw only part of the history). Deal states and per-deal summaries
are checked against the reference too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, event, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from services.attribution.fitting import request_fit, run_requested_fits
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import Base, CreditRow, DealAttributionRow, DealRow, ModelFitRow
from services.core.settings import Settings
from tests.integration.test_late_arrivals import NOW
from tests.support import builders as b
from tests.support import reference
from tests.support.streams import reference_for

pytestmark = pytest.mark.integration

CAMPAIGNS = [("c0", "paid_search"), ("c1", "email"), ("c2", "webinar")]
CONTACTS = ["p0", "p1", "p2", "p3"]
ACCOUNTS = ["a0", "a1"]
DEALS = ["d0", "d1", "d2"]


def day() -> st.SearchStrategy[float]:
    return st.integers(min_value=-60, max_value=10).map(lambda d: d + 0.25)


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A small CRM history: campaigns, contacts that move and merge, touches, deals, rates."""
    n = iter(range(10_000))
    events: list[dict[str, Any]] = [b.campaign(c, ch) for c, ch in CAMPAIGNS]
    for contact in CONTACTS:
        for _ in range(draw(st.integers(1, 2))):
            events.append(
                b.contact(
                    contact,
                    draw(st.sampled_from([*ACCOUNTS, None])),
                    days=draw(day()),
                    eid=f"ct-{next(n)}",
                )
            )
    for _ in range(draw(st.integers(0, 2))):
        survivor, absorbed = draw(st.permutations(CONTACTS))[:2]
        events.append(
            {
                "event_id": f"m-{next(n)}",
                "type": "contact.merged",
                "occurred_at": b.at(draw(day())),
                "contact_id": survivor,
                "merged_contact_id": absorbed,
            }
        )
    for _ in range(draw(st.integers(1, 15))):
        target = draw(st.sampled_from(["contact", "account", "both"]))
        events.append(
            b.touch(
                f"t-{next(n)}",
                draw(st.sampled_from(CAMPAIGNS))[0],
                draw(day()),
                contact=draw(st.sampled_from(CONTACTS)) if target != "account" else None,
                account=draw(st.sampled_from(ACCOUNTS)) if target != "contact" else None,
                lead=draw(st.booleans()),
            )
        )
    # d0 always ends won, in USD, with a touch of its own account in its journey, so every
    # example credits at least one deal under every model (nothing compared is ever empty).
    anchor = b.touch(f"t-{next(n)}", draw(st.sampled_from(CAMPAIGNS))[0], draw(day()))
    events.append(anchor)
    for deal in DEALS:
        currency = "USD" if deal == "d0" else draw(st.sampled_from(["USD", "EUR"]))
        account = draw(st.sampled_from(ACCOUNTS))
        if deal == "d0":
            anchor["account_id"] = account
        created = b.deal_created(
            deal,
            account,
            f"{draw(st.integers(0, 99999))}.{draw(st.integers(0, 99)):02d}",
            draw(day()),
            currency=currency,
            contacts=draw(st.lists(st.sampled_from(CONTACTS), max_size=2)),
        )
        created["event_id"] = f"dc-{next(n)}"
        events.append(created)
        if draw(st.integers(0, 9)) < 7:  # most deals end up won at some point
            events.append(b.deal_status(deal, "closed_won", draw(day()), eid=f"ds-{next(n)}"))
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["closed_won", "closed_lost", "reopened", "updated"]))
            extra = (
                {"amount": f"{draw(st.integers(0, 9999))}.00", "currency": currency}
                if kind == "updated"
                else {}
            )
            events.append(b.deal_status(deal, kind, draw(day()), eid=f"ds-{next(n)}", **extra))
    # After every other event (days are at most 10.25): d0's last status event is a win.
    events.append(b.deal_status("d0", "closed_won", 11, eid=f"ds-{next(n)}"))
    for _ in range(draw(st.integers(0, 3))):
        rate = f"{draw(st.integers(50, 200)) / 100:.2f}"
        events.append(
            b.fx(f"2026-02-{draw(st.integers(1, 28)):02d}", "EUR", "USD", rate, eid=f"fx-{next(n)}")
        )
    return events


@dataclass(frozen=True)
class Delivery:
    history: list[dict[str, Any]]
    batches: list[list[dict[str, Any]]]
    early_fit: int | None


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    """A history and its arrival: shuffled, some events twice, cut into batches; and after
    which batch (if any) an early fit of markov and shapley runs."""
    history = draw(histories())
    arrivals = history + draw(st.lists(st.sampled_from(history), max_size=5))
    arrivals = draw(st.permutations(arrivals))
    cuts = sorted(draw(st.lists(st.integers(0, len(arrivals)), max_size=6)))
    bounds = [0, *cuts, len(arrivals)]
    batches = [arrivals[i:j] for i, j in zip(bounds, bounds[1:], strict=False) if j > i]
    early_fit = draw(st.one_of(st.none(), st.integers(0, len(batches) - 1)))
    return Delivery(history, batches, early_fit)


def refit(sessions: sessionmaker[Session], cfg: Settings) -> None:
    """Fit markov and shapley on the decided deals stored now, and recompute their credits."""
    with sessions() as session, session.begin():
        for model_id in reference.DATA_DRIVEN:
            request_fit(session, model_id, now=NOW)
    assert len(run_requested_fits(sessions, cfg)) == len(reference.DATA_DRIVEN)


def deliver(engine: Engine, delivery: Delivery, cfg: Settings) -> None:
    """Apply the batches as the worker does, one transaction each; refit at the end."""
    sessions = make_sessionmaker(engine)
    for n, batch in enumerate(delivery.batches):
        with sessions() as session, session.begin():
            sync_builtin_models(session, cfg)
            apply_events(session, b.events(*batch), settings=cfg, now=NOW)
        if n == delivery.early_fit:
            refit(sessions, cfg)  # on part of the history: the final refit must replace it
    refit(sessions, cfg)


def as_fractions(table: dict[str, str]) -> dict[str, Fraction]:
    return {channel: Fraction(text) for channel, text in table.items()}


def assert_matches_reference(engine: Engine, history: list[dict[str, Any]], cfg: Settings) -> None:
    """Credits, fits, deal states and per-deal summaries equal the reference's."""
    ref = reference_for(history, cfg)
    expected = ref.credit_lines(reference.ALL_MODELS)
    credited = {deal for _, deal, _ in expected}
    assert "d0" in credited and {model for model, _, _ in expected} == set(reference.ALL_MODELS)
    with make_sessionmaker(engine)() as session:
        got = {
            (r.model_id, r.deal_id, r.touch_event_id): r.credit_minor
            for r in session.scalars(select(CreditRow))
        }
        assert got == expected
        fits = {
            r.model_id: orjson.loads(r.results)
            for r in session.scalars(select(ModelFitRow).order_by(ModelFitRow.id))
        }
        assert as_fractions(fits["markov"]["removal_effects"]) == ref.removal_effects
        assert as_fractions(fits["shapley"]["values"]) == ref.shapley_values
        deals = {
            r.deal_id: (r.status, r.closed_at, r.lost_at, r.reporting_minor)
            for r in session.scalars(select(DealRow))
        }
        assert deals == {
            d.deal_id: (d.status, d.closed_at, d.lost_at, d.reporting_minor)
            for d in ref.deals.values()
        }
        summaries = {
            (r.model_id, r.deal_id): (r.amount_minor, r.attributed_minor, r.unattributed_minor)
            for r in session.scalars(select(DealAttributionRow))
        }
    won = [d for d in ref.deals.values() if d.won and d.reporting_minor is not None]
    assert won
    assert summaries == {
        (model, d.deal_id): (
            d.reporting_minor,
            d.reporting_minor - d.unattributed_minor,
            d.unattributed_minor,
        )
        for model in reference.ALL_MODELS
        for d in won
    }


@pytest.fixture()
def memory_sqlite() -> Iterator[Engine]:
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys=ON"))
    yield engine
    engine.dispose()


def reset(engine: Engine) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
def test_any_arrival_gives_the_reference_result_sqlite(
    memory_sqlite: Engine, delivery: Delivery
) -> None:
    cfg = Settings(_env_file=None, database_url="sqlite://")
    reset(memory_sqlite)
    deliver(memory_sqlite, delivery, cfg)
    assert_matches_reference(memory_sqlite, delivery.history, cfg)


@pytest.fixture(scope="module")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
def test_any_arrival_gives_the_reference_result_postgresql(
    pg_engine: Engine, delivery: Delivery
) -> None:
    cfg = Settings(_env_file=None, database_url="postgresql://unused")
    with pg_engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in ("alembic_version", "api_keys"):
                conn.execute(delete(table))
    deliver(pg_engine, delivery, cfg)
    assert_matches_reference(pg_engine, delivery.history, cfg)


def test_campaign_without_channel_gets_data_driven_credit(memory_sqlite: Engine) -> None:
    # "ghost" is never upserted: its touches form the channel "(unknown)" in the fit and in
    # every deal's split, as in the reference (tests/unit/test_reference.py works it by hand).
    history = [
        b.campaign("c1", "email"),
        b.touch("t-ghost", "ghost", -2, account="a0"),
        b.touch("t-mail", "c1", -1, account="a0"),
        b.deal_created("d0", "a0", "90.00", 0),
        b.deal_status("d0", "closed_won", 1),
        b.touch("t-lost", "c1", -1, account="a1"),
        b.deal_created("d1", "a1", "10.00", 0),
        b.deal_status("d1", "closed_lost", 1),
    ]
    cfg = Settings(_env_file=None, database_url="sqlite://")
    reset(memory_sqlite)
    deliver(memory_sqlite, Delivery(history, [history], None), cfg)
    expected = reference_for(history, cfg).credit_lines(reference.DATA_DRIVEN)
    assert expected[("markov", "d0", "t-ghost")] == 3000  # removal effect 1/2 against 1
    assert_matches_reference(memory_sqlite, history, cfg)
