"""Simulated CRM streams published straight to a topic, and projection snapshots to compare."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from services.attribution.inputs import history_of
from services.core.db.schema import (
    CampaignCostDayRow,
    CampaignRow,
    ContactRow,
    CreditRow,
    DealAttributionRow,
    DealContactRow,
    DealRow,
    EventRow,
    FxRateRow,
    TouchRow,
)
from services.core.events import EVENT_LIST_ADAPTER, encode, partition_key
from services.core.kafka import ensure_topics, make_producer
from services.core.settings import Settings
from services.domain import builtin_models
from services.domain.datadriven import DATA_DRIVEN
from services.domain.history import attribute_history

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


def expected_credits(
    events: list[dict[str, Any]],
    settings: Settings,
) -> dict[tuple[str, str, str], int]:
    """(model, deal, touch) -> credit, from the pure domain over the whole history."""
    outcomes = attribute_history(
        history_of(EVENT_LIST_ADAPTER.validate_python(events)),
        models=builtin_models(half_life_days=settings.half_life_days),
        reporting_currency=settings.reporting_currency,
        lookback=timedelta(days=settings.lookback_days),
    )
    return {
        (model, deal_id, line.touch.event_id): line.credit_minor
        for deal_id, outcome in outcomes.items()
        for model, lines in outcome.credits.items()
        for line in lines
    }
