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
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, union
from sqlalchemy.orm import Session

from services.attribution.event_cache import EventCache, load_events
from services.attribution.inputs import deal_change
from services.attribution.outcomes import write_outcomes
from services.attribution.state_store import Impact, Span, load_rates
from services.core.db.journeys import journey_candidates
from services.core.db.schema import (
    ContactRow,
    DealContactRow,
    DealRow,
    EventRow,
)
from services.core.db.upsert import among
from services.core.settings import Settings
from services.domain import (
    AttributionModel,
)
from services.domain.inputs import DealChange
from services.domain.outcome import deal_outcome
from services.domain.state import STATUS_WON, DealState, fold_deal


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
    if impact.roots and (of_roots := _deals_of_roots(session, impact.roots)):
        conditions.append(among(session, DealRow.deal_id, of_roots))
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


def _contacts_under(session: Session, roots: Iterable[str]) -> set[str]:
    """Return every contact whose root may be one of ``roots``: the contacts rows under them,
    and the roots themselves (a contact without a row is its own root).

    A superset for the callers' exact test (``_ROOT``); index-driven, so its cost follows the
    roots asked about, not the size of the tables (a test on ``coalesce(root, contact)`` can
    use no index: it scanned every contact and deal role).
    """
    roots = set(roots)
    under = session.scalars(
        select(ContactRow.contact_id).where(among(session, ContactRow.root_contact_id, roots))
    )
    return roots | set(under)


# The root of a deal's contact role, as journeys read it (a contact without a row is its own).
_ROOT = func.coalesce(ContactRow.root_contact_id, DealContactRow.contact_id)


def _deals_of_roots(session: Session, roots: Iterable[str]) -> set[str]:
    """Return the deals whose contact roles resolve to one of ``roots``."""
    roots = set(roots)
    rows = session.execute(
        select(DealContactRow.deal_id, _ROOT)
        .outerjoin(ContactRow, ContactRow.contact_id == DealContactRow.contact_id)
        .where(among(session, DealContactRow.contact_id, _contacts_under(session, roots)))
    )
    return {deal_id for deal_id, root in rows if root in roots}


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
        contacts = _contacts_under(session, impact.touch_roots)
        queries.append(
            (
                select(*window, _ROOT)
                .join(DealContactRow, DealContactRow.deal_id == DealRow.deal_id)
                .outerjoin(ContactRow, ContactRow.contact_id == DealContactRow.contact_id)
                .where(
                    DealRow.status == STATUS_WON,
                    among(session, DealContactRow.contact_id, contacts),
                ),
                impact.touch_roots,
            )
        )
    for query, spans in queries:
        for deal_id, start, closed_at, key in session.execute(query):
            if key not in spans:  # a contact under another root (``_contacts_under``)
                continue
            first, last = spans[key]
            if closed_at is None or start is None:
                continue
            if first <= closed_at and start - lookback <= last:
                found.add(deal_id)
    return found


def recompute_deals(
    session: Session,
    deal_ids: Iterable[str],
    *,
    settings: Settings,
    models: Sequence[AttributionModel],
    cache: EventCache | None = None,
) -> int:
    """Re-derive the given deals and replace their credits under ``models``; return the count.

    Load the deals' state, rates and journey candidates; derive each deal's outcome
    (``services.domain.outcome.deal_outcome``, the rule the history specification applies
    too); write them. Credits of other models are left alone, so one model can be rebuilt on
    its own. ``cache`` (optional) saves decoding stored events again.
    """
    deal_ids = sorted(set(deal_ids))
    if not deal_ids:
        return 0
    deals = _load_deals(session, deal_ids, cache)
    reporting, lookback = settings.reporting_currency, timedelta(days=settings.lookback_days)
    rates = load_rates(session, {d.currency for d in deals if d.currency}, reporting)
    won = [d for d in deals if d.status == STATUS_WON]
    candidates = journey_candidates(session, won, lookback=lookback)
    outcomes = [
        deal_outcome(
            deal,
            candidates.get(deal.deal_id, []),
            rates=rates,
            models=models,
            reporting_currency=reporting,
            lookback=lookback,
        )
        for deal in deals
    ]
    write_outcomes(session, deal_ids, outcomes, models)
    return len(deals)


def _load_deals(
    session: Session, deal_ids: Sequence[str], cache: EventCache | None
) -> list[DealState]:
    """Fold the stored deal events of each deal into its state (deals without one left out)."""
    by_deal: dict[str, list[DealChange]] = {d: [] for d in deal_ids}
    for event in load_events(
        session, cache, among(session, EventRow.deal_id, deal_ids), EventRow.type.like("deal.%")
    ):
        by_deal[event.deal_id].append(deal_change(event))  # type: ignore[union-attr,arg-type]
    return [fold_deal(d, events) for d, events in by_deal.items() if events]
