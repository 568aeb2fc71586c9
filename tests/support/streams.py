"""Simulated CRM streams published straight to a topic, and projection snapshots to compare."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, func, select

from services.core.db.schema import (
    AccountRow,
    AttributeRow,
    CampaignCostDayRow,
    CampaignRow,
    ContactRow,
    CreditRow,
    DealAttributionRow,
    DealContactRow,
    DealRow,
    DirtyDealRow,
    DirtyRootRow,
    EventRow,
    FxRateRow,
    PendingImpactRow,
    TouchRow,
)
from services.core.events import EVENT_LIST_ADAPTER, encode, partition_key
from services.core.kafka import ensure_topics, make_producer
from services.core.settings import Settings
from services.domain.datadriven import DATA_DRIVEN
from tests.support import reference

PROJECTION = (
    DealRow,
    DealContactRow,
    CreditRow,
    DealAttributionRow,
    CampaignCostDayRow,
    ContactRow,
    TouchRow,
    CampaignRow,
    FxRateRow,
    AccountRow,
    AttributeRow,
)


def publish(settings: Settings, events: list[dict[str, Any]]) -> int:
    """Create the topics and publish the events as a producer that bypassed ingest would."""
    ensure_topics(settings)
    producer = make_producer(settings)
    try:
        for event in EVENT_LIST_ADAPTER.validate_python(events):
            producer.send(settings.events_topic, key=partition_key(event), value=encode(event))
        producer.flush(120)
    finally:
        producer.close()
    return len(events)


def stored_events(engine: Engine) -> int:
    """How many distinct events the database holds."""
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(EventRow)) or 0)


def queued_work(engine: Engine) -> int:
    """How many impacts, dirty deals and dirty roots still wait to be recomputed."""
    with engine.connect() as conn:
        return sum(
            int(conn.scalar(select(func.count()).select_from(table)) or 0)
            for table in (PendingImpactRow, DirtyDealRow, DirtyRootRow)
        )


def wait_settled(engine: Engine, *, timeout_s: float = 120.0) -> None:
    """Wait until the workers recomputed everything the stored events changed."""
    deadline = time.monotonic() + timeout_s
    while (left := queued_work(engine)) > 0:
        assert time.monotonic() < deadline, f"{left} queued recomputes after {timeout_s} s"
        time.sleep(0.1)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection row, as sorted tuples of column values.

    Credits of the data-driven models are left out: they follow the snapshot the worker
    fitted, and when it fitted (its first maintenance pass after decided deals exist) depends
    on timing, not only on the events.
    """
    out = {}
    with engine.connect() as conn:
        for row_cls in PROJECTION:
            table = row_cls.__table__  # type: ignore[attr-defined]
            query = select(table)
            if "model_id" in table.c:
                query = query.where(table.c.model_id.not_in(DATA_DRIVEN))
            out[table.name] = sorted(tuple(r) for r in conn.execute(query))
    return out


def credits_by_key(engine: Engine) -> dict[tuple[str, str, str], int]:
    """(model, deal, touch) -> credit, as stored, for every model but the data-driven ones."""
    with engine.connect() as conn:
        return {
            (r.model_id, r.deal_id, r.touch_event_id): r.credit_minor
            for r in conn.execute(select(CreditRow).where(CreditRow.model_id.not_in(DATA_DRIVEN)))
        }


def deal_states(engine: Engine) -> dict[str, tuple[Any, ...]]:
    """deal -> (status, closed_at, lost_at, reporting amount), as stored."""
    with engine.connect() as conn:
        return {
            r.deal_id: (r.status, r.closed_at, r.lost_at, r.reporting_minor)
            for r in conn.execute(select(DealRow))
        }


def expected_deal_states(ref: reference.Reference) -> dict[str, tuple[Any, ...]]:
    """deal -> (status, closed_at, lost_at, reporting amount), from the reference."""
    return {
        d.deal_id: (d.status, d.closed_at, d.lost_at, d.reporting_minor) for d in ref.deals.values()
    }


def reference_for(events: list[dict[str, Any]], settings: Settings) -> reference.Reference:
    """The independent reference (tests/support/reference.py) over the events, as configured."""
    assert settings.markov_order == 1, "the reference fits a first-order chain only"
    return reference.compute(
        events,
        reporting_currency=settings.reporting_currency,
        lookback_days=settings.lookback_days,
        half_life_days=settings.half_life_days,
    )


def expected_credits(
    events: list[dict[str, Any]],
    settings: Settings,
    *,
    data_driven: bool = False,
) -> dict[tuple[str, str, str], int]:
    """(model, deal, touch) -> credit, from the independent reference over the whole history.

    Every built-in positional model and time decay; with ``data_driven`` also markov and
    shapley as fitted on every decided deal of the history (for a database whose latest fit
    saw all of them).
    """
    models = reference.ALL_MODELS if data_driven else reference.MODELS
    return reference_for(events, settings).credit_lines(models)
