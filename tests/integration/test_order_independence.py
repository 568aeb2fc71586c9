"""Property: for any arrival order, batching and duplication of a CRM history, the worker's
incremental path (apply_events, batch by batch, through the database) ends with exactly the
credits the pure domain computes from the sorted, single history (``attribute_history``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, event, select
from sqlalchemy.pool import StaticPool

from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import Base, CreditRow, DealAttributionRow, DealRow
from services.core.settings import Settings
from tests.integration.test_late_arrivals import NOW
from tests.support import builders as b
from tests.support.streams import expected_credits

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
    for deal in DEALS:
        currency = draw(st.sampled_from(["USD", "EUR"]))
        created = b.deal_created(
            deal,
            draw(st.sampled_from(ACCOUNTS)),
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
    for _ in range(draw(st.integers(0, 3))):
        rate = f"{draw(st.integers(50, 200)) / 100:.2f}"
        events.append(
            b.fx(f"2026-02-{draw(st.integers(1, 28)):02d}", "EUR", "USD", rate, eid=f"fx-{next(n)}")
        )
    return events


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """A history and its arrival: shuffled, some events twice, cut into batches."""
    history = draw(histories())
    arrivals = history + draw(st.lists(st.sampled_from(history), max_size=5))
    arrivals = draw(st.permutations(arrivals))
    cuts = sorted(draw(st.lists(st.integers(0, len(arrivals)), max_size=6)))
    bounds = [0, *cuts, len(arrivals)]
    return history, [arrivals[i:j] for i, j in zip(bounds, bounds[1:], strict=False) if j > i]


def incremental_credits(
    engine: Engine, batches: list[list[dict[str, Any]]], cfg: Settings
) -> dict[tuple[str, str, str], int]:
    sessions = make_sessionmaker(engine)
    for batch in batches:
        with sessions() as session, session.begin():
            sync_builtin_models(session, cfg)
            apply_events(session, b.events(*batch), settings=cfg, now=NOW)
    with sessions() as session:
        return {
            (r.model_id, r.deal_id, r.touch_event_id): r.credit_minor
            for r in session.scalars(select(CreditRow))
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
def test_any_arrival_gives_the_ordered_result_sqlite(memory_sqlite: Engine, delivery: Any) -> None:
    history, batches = delivery
    cfg = Settings(_env_file=None, database_url="sqlite://")
    reset(memory_sqlite)
    assert incremental_credits(memory_sqlite, batches, cfg) == expected_credits(history, cfg)


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
def test_any_arrival_gives_the_ordered_result_postgresql(pg_engine: Engine, delivery: Any) -> None:
    history, batches = delivery
    cfg = Settings(_env_file=None, database_url="postgresql://unused")
    with pg_engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in ("alembic_version", "api_keys"):
                conn.execute(delete(table))
    assert incremental_credits(pg_engine, batches, cfg) == expected_credits(history, cfg)
    with make_sessionmaker(pg_engine)() as session:
        won = session.scalars(select(DealRow.deal_id).where(DealRow.status == "won")).all()
        summaries = session.scalars(select(DealAttributionRow.deal_id)).all()
        assert set(summaries) <= set(won)
