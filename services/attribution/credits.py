"""Recompute deals: state, conversion into the reporting currency, journeys and credits.

Invariant (per model, per won and converted deal): the credit rows sum to
``deal_attributions.attributed_minor``, and attributed + unattributed = the converted amount.
A recompute deletes a deal's rows and writes them again from stored events, so running it
twice, or after any replay, gives the same rows. Every ``deal_attributions`` row is written
here, beside the deal row it comes from: its ``amount_minor`` and ``closed_at`` are the deal's
``reporting_minor`` and ``closed_at``, and it exists only while the deal is won and converted
(the reports' pending revenue relies on it: ``services.api.queries.uncredited``), as long as
a recompute that changes a deal covers every model holding rows for it (all callers pass the
models in force). The report rollups change in the same transaction by exactly the rows
removed and written (``services.core.db.rollups``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_, select, union
from sqlalchemy.orm import Session

from services.attribution.event_cache import EventCache, load_events
from services.attribution.inputs import deal_change
from services.attribution.state_store import Impact, Span, load_rates
from services.core.db.journeys import journey_candidates
from services.core.db.rollups import (
    ATTRIBUTION_COLUMNS,
    CREDIT_COLUMNS,
    WON_COLUMNS,
    append_deltas,
)
from services.core.db.schema import (
    ContactRow,
    CreditRow,
    DealAttributionRow,
    DealContactRow,
    DealRow,
    EventRow,
)
from services.core.db.upsert import among, insert_new, upsert
from services.core.settings import Settings
from services.domain import (
    AttributionModel,
    role_labels,
    select_journey,
)
from services.domain.attribute import deal_credits
from services.domain.inputs import DealChange
from services.domain.rollup import ATTRIBUTIONS, CREDITS, WON, RollupSpec
from services.domain.state import STATUS_WON, DealState, Rate, convert_won_deal, fold_deal


def affected_deals(
    session: Session, impact: Impact, *, reporting: str, lookback: timedelta
) -> set[str]:
    """Return the deals whose state or credits a batch may have changed.

    A new touch affects only won deals whose journey window ``[C - lookback, W]`` meets the
    span of the batch's touches for that account or contact root. A new rate affects won deals
    in its non-reporting currency closed on or after its date only: deals in the reporting
    currency are never converted, and earlier deals convert at earlier rates. The number of
    queries and their size do not grow with the batch (a year of daily rates is one query).
    """
    deal_ids = set(impact.deal_ids)
    conditions: list[ColumnElement[bool]] = []
    if impact.accounts:
        conditions.append(among(session, DealRow.account_id, impact.accounts))
    if impact.roots:
        conditions.append(DealRow.deal_id.in_(_deals_of_roots(session, impact.roots)))
    if conditions:
        # One SELECT per condition, UNIONed: an OR of ``= ANY`` tests is a sequential scan.
        won = select(DealRow.deal_id).where(DealRow.status == STATUS_WON)
        deal_ids.update(session.scalars(union(*(won.where(c) for c in conditions))))
    for currency, dates in impact.fx_changes.items():
        if currency != reporting:
            deal_ids.update(_deals_of_rates(session, currency, sorted(dates)))
    deal_ids.update(_deals_touched(session, impact, lookback=lookback))
    return deal_ids


def _deals_of_rates(session: Session, currency: str, changed: Sequence[date]) -> set[str]:
    """Return the won deals in ``currency`` whose conversion a rate dated in ``changed`` moves.

    A rate dated D changes a deal closed on or after D whose current rate is not later than D
    (or that has none): a later rate on or before the close still wins. One query fetches the
    deals any of the dates could move, and the exact test picks the latest changed date on or
    before each close.
    """
    start = datetime.combine(changed[0], time.min, tzinfo=UTC)
    rows = session.execute(
        select(DealRow.deal_id, DealRow.closed_at, DealRow.fx_rate_date).where(
            DealRow.status == STATUS_WON,
            DealRow.currency == currency,
            DealRow.closed_at >= start,
            or_(DealRow.fx_rate_date.is_(None), DealRow.fx_rate_date <= changed[-1]),
        )
    )
    found = set()
    for deal_id, closed_at, rate_date in rows:
        assert closed_at is not None  # the query asked for a close on or after a date
        latest = bisect_right(changed, closed_at.astimezone(UTC).date()) - 1
        if latest >= 0 and (rate_date is None or rate_date <= changed[latest]):
            found.add(deal_id)
    return found


def _deals_of_roots(session: Session, roots: Iterable[str]) -> Select[Any]:
    """Select the deals whose contact roles resolve to one of ``roots``."""
    root = func.coalesce(ContactRow.root_contact_id, DealContactRow.contact_id)
    return (
        select(DealContactRow.deal_id)
        .outerjoin(ContactRow, ContactRow.contact_id == DealContactRow.contact_id)
        .where(among(session, root, set(roots)))
    )


def _deals_touched(session: Session, impact: Impact, *, lookback: timedelta) -> set[str]:
    """Return the won deals whose journey window meets the span of their new touches."""
    found: set[str] = set()
    window = (
        DealRow.deal_id,
        func.coalesce(DealRow.created_at, DealRow.closed_at),
        DealRow.closed_at,
    )
    queries: list[tuple[Any, dict[str, Span]]] = []
    if impact.touch_accounts:
        queries.append(
            (
                select(*window, DealRow.account_id).where(
                    DealRow.status == STATUS_WON,
                    among(session, DealRow.account_id, impact.touch_accounts),
                ),
                impact.touch_accounts,
            )
        )
    if impact.touch_roots:
        root = func.coalesce(ContactRow.root_contact_id, DealContactRow.contact_id)
        queries.append(
            (
                select(*window, root)
                .join(DealContactRow, DealContactRow.deal_id == DealRow.deal_id)
                .outerjoin(ContactRow, ContactRow.contact_id == DealContactRow.contact_id)
                .where(DealRow.status == STATUS_WON, among(session, root, impact.touch_roots)),
                impact.touch_roots,
            )
        )
    for query, spans in queries:
        for deal_id, start, closed_at, key in session.execute(query):
            first, last = spans[key]
            if closed_at is None or start is None:
                continue
            if first <= closed_at and start - lookback <= last:
                found.add(deal_id)
    return found


@lru_cache(maxsize=64)
def _labels(roles: frozenset[str]) -> str:
    """The stored form of a touch's roles (at most 16 distinct sets)."""
    return ",".join(role_labels(roles))


def _deal_row(deal: DealState) -> dict[str, object]:
    return {
        "deal_id": deal.deal_id,
        "account_id": deal.account_id,
        "status": deal.status,
        "stage": deal.stage,
        "amount_minor": deal.amount_minor,
        "currency": deal.currency,
        "created_at": deal.created_at,
        "closed_at": deal.closed_at,
        "lost_at": deal.lost_at,
        "reporting_minor": None,
        "fx_rate": None,
        "fx_rate_date": None,
        "conversion": None,
        "journey_touches": 0,
    }


def recompute_deals(
    session: Session,
    deal_ids: Iterable[str],
    *,
    settings: Settings,
    models: Sequence[AttributionModel],
    cache: EventCache | None = None,
) -> int:
    """Re-derive the given deals and replace their credits under ``models``; return the count.

    Credits of other models are left alone, so one model can be rebuilt on its own. ``cache``
    (optional) saves decoding stored events again.
    """
    deal_ids = sorted(set(deal_ids))
    if not deal_ids:
        return 0
    by_deal: dict[str, list[DealChange]] = {d: [] for d in deal_ids}
    for event in load_events(
        session, cache, among(session, EventRow.deal_id, deal_ids), EventRow.type.like("deal.%")
    ):
        by_deal[event.deal_id].append(deal_change(event))  # type: ignore[union-attr,arg-type]
    deals = [fold_deal(d, events) for d, events in by_deal.items() if events]
    reporting = settings.reporting_currency
    rates: list[Rate] = load_rates(session, {d.currency for d in deals if d.currency}, reporting)
    lookback = timedelta(days=settings.lookback_days)

    old = _remove_rows(session, deal_ids, [m.model_id for m in models])
    old[WON] = _deal_rows(session, [d.deal_id for d in deals])
    deal_rows, contact_rows, credit_rows, summary_rows = [], [], [], []
    candidates = journey_candidates(
        session, [d for d in deals if d.status == STATUS_WON], lookback=lookback
    )
    for deal in deals:
        row = _deal_row(deal)
        deal_rows.append(row)
        contact_rows += [{"deal_id": deal.deal_id, "contact_id": c} for c in deal.contact_ids]
        if deal.status != STATUS_WON:
            continue
        conv = convert_won_deal(deal, target=reporting, rates=rates)
        if conv.amount_minor is None:
            # No usable rate, or won without any amount: reported, never silently dropped.
            row["conversion"] = "unconverted"
            continue
        assert deal.closed_at is not None and deal.journey_start is not None
        row.update(
            conversion="converted",
            reporting_minor=conv.amount_minor,
            fx_rate=None if conv.rate is None else str(conv.rate),
            fx_rate_date=conv.rate_date if deal.currency != reporting else None,
        )
        journey = select_journey(
            candidates.get(deal.deal_id, []),
            created_at=deal.journey_start,
            closed_at=deal.closed_at,
            lookback=lookback,
        )
        row["journey_touches"] = len(journey)
        result = deal_credits(
            journey,
            amount_minor=conv.amount_minor,
            created_at=deal.journey_start,
            closed_at=deal.closed_at,
            models=models,
        )
        labels = [_labels(roles) for roles in result.roles]
        for model in models:
            amounts = result.credits.get(model.model_id, [])
            weights = result.weights.get(model.model_id, [])
            attributed = sum(amounts)
            summary_rows.append(
                {
                    "model_id": model.model_id,
                    "deal_id": deal.deal_id,
                    "closed_at": deal.closed_at,
                    "amount_minor": conv.amount_minor,
                    "attributed_minor": attributed,
                    "unattributed_minor": conv.amount_minor - attributed,
                    "fit_id": getattr(model, "fit_id", None),
                }
            )
            credit_rows += [
                {
                    "model_id": model.model_id,
                    "deal_id": deal.deal_id,
                    "touch_event_id": touch.event_id,
                    "position": position,
                    "campaign_id": touch.campaign_id,
                    "roles": labels[position],
                    "weight": weights[position],
                    "credit_minor": amounts[position],
                    "closed_at": deal.closed_at,
                }
                for position, touch in enumerate(journey)
            ]
    upsert(session, DealRow, deal_rows)
    for table, rows in (
        (DealContactRow, contact_rows),
        (CreditRow, credit_rows),
        (DealAttributionRow, summary_rows),
    ):
        insert_new(session, table, rows)  # the deal's rows were deleted above
    for spec, rows in ((WON, deal_rows), (CREDITS, credit_rows), (ATTRIBUTIONS, summary_rows)):
        append_deltas(session, spec, old[spec], rows)
    return len(deals)


def _remove_rows(
    session: Session, deal_ids: Sequence[str], model_ids: Sequence[str]
) -> dict[RollupSpec, list[Any]]:
    """Delete the deals' contact roles, and their credits and attributions under the models;
    return the deleted rows the rollups summarise (``DELETE … RETURNING``: exactly those)."""
    removed: dict[RollupSpec, list[Any]] = {}
    for table, columns, spec in (
        (CreditRow, CREDIT_COLUMNS, CREDITS),
        (DealAttributionRow, ATTRIBUTION_COLUMNS, ATTRIBUTIONS),
    ):
        condition = among(session, table.deal_id, deal_ids)
        condition &= among(session, table.model_id, model_ids)
        # No ORM objects of these rows are ever loaded: nothing to synchronise.
        stmt = delete(table).where(condition).returning(*columns)
        found = session.execute(stmt.execution_options(synchronize_session=False))
        removed[spec] = [row._mapping for row in found]
    session.execute(
        delete(DealContactRow)
        .where(among(session, DealContactRow.deal_id, deal_ids))
        .execution_options(synchronize_session=False)
    )
    return removed


def _deal_rows(session: Session, deal_ids: Sequence[str]) -> list[Any]:
    """Return the stored rows of the deals, as the won rollup reads them, before an upsert.

    Exact because no other transaction recomputes these deals meanwhile (the caller's
    per-deal rule).
    """
    query = select(*WON_COLUMNS).where(among(session, DealRow.deal_id, deal_ids))
    return [row._mapping for row in session.execute(query)]
