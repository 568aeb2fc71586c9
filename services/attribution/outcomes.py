"""Write deal outcomes: the deals, their contact roles, credits and deal attributions, and
the report rollups' change, in the caller's transaction.

Invariant: the rows a deal's outcome replaces are exactly those deleted here (``DELETE …
RETURNING``; the influence pairs from the ``linear`` rows among them) and, for the ``deals``
row, those read just before its upsert; the rollups get
the difference between them and the rows written (``services.core.db.rollups``), so they stay
equal to what they summarise. Exact as long as no other transaction rewrites the same deals
meanwhile (the caller's per-deal rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.core.db.rollups import (
    LEAD_CREATION,
    SOURCE_MODEL,
    WON_COLUMNS,
    append_deltas,
    delete_attributions,
    delete_credits,
)
from services.core.db.schema import CreditRow, DealAttributionRow, DealContactRow, DealRow
from services.core.db.upsert import among, insert_new, upsert
from services.domain import AttributionModel, role_labels
from services.domain.outcome import DealOutcome, ModelAttribution
from services.domain.rollup import (
    ATTRIBUTIONS,
    CREDITS,
    INFLUENCE,
    WON,
    Entry,
    InfluenceTouch,
    RollupSpec,
    entries,
    influence_pairs,
    utc_day,
)
from services.domain.state import DealState


def write_outcomes(
    session: Session,
    deal_ids: Sequence[str],
    outcomes: Sequence[DealOutcome],
    models: Sequence[AttributionModel],
) -> None:
    """Replace the deals' rows by their outcomes', and the rollups by the difference.

    The deals' credits and attributions under ``models`` and their contact roles are deleted
    (all of ``deal_ids``: a deal whose events are gone keeps no credits) and written again.
    """
    old, old_pairs = _remove_rows(session, deal_ids, [m.model_id for m in models])
    old[WON] = list(entries(WON, _deal_rows(session, [o.state.deal_id for o in outcomes])))
    new: dict[RollupSpec, list[dict[str, Any]]] = {WON: [], CREDITS: [], ATTRIBUTIONS: []}
    contact_rows = []
    touches: list[InfluenceTouch] = []
    amounts: dict[str, int] = {}
    for outcome in outcomes:
        deal = outcome.state
        new[WON].append(_deal_row(outcome))
        contact_rows += [{"deal_id": deal.deal_id, "contact_id": c} for c in deal.contact_ids]
        for model in outcome.attributions():
            new[ATTRIBUTIONS].append(_attribution_row(deal, outcome, model))
            new[CREDITS] += _credit_rows(deal, outcome, model)
            if model.model_id == SOURCE_MODEL:
                touches += _influence_touches(outcome)
                assert outcome.reporting_minor is not None  # credited: converted
                amounts[deal.deal_id] = outcome.reporting_minor
    upsert(session, DealRow, new[WON])
    for table, rows in (
        (DealContactRow, contact_rows),
        (CreditRow, new[CREDITS]),
        (DealAttributionRow, new[ATTRIBUTIONS]),
    ):
        insert_new(session, table, rows)  # the deal's rows were deleted above
    for spec, rows in new.items():
        append_deltas(session, spec, old[spec], entries(spec, rows))
    new_pairs = influence_pairs(touches, amounts)
    append_deltas(session, INFLUENCE, entries(INFLUENCE, old_pairs), entries(INFLUENCE, new_pairs))


def _deal_row(outcome: DealOutcome) -> dict[str, Any]:
    deal = outcome.state
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
        "reporting_minor": outcome.reporting_minor,
        "fx_rate": None if outcome.rate is None else str(outcome.rate),
        "fx_rate_date": outcome.rate_date,
        "conversion": outcome.conversion,
        "journey_touches": len(outcome.journey),
    }


def _attribution_row(
    deal: DealState, outcome: DealOutcome, model: ModelAttribution
) -> dict[str, Any]:
    return {
        "model_id": model.model_id,
        "deal_id": deal.deal_id,
        "closed_at": deal.closed_at,
        "amount_minor": outcome.reporting_minor,
        "attributed_minor": model.attributed_minor,
        "unattributed_minor": model.unattributed_minor,
        "fit_id": model.fit_id,
    }


@lru_cache(maxsize=64)
def _labels(roles: frozenset[str]) -> str:
    """The stored form of a touch's roles (at most 16 distinct sets)."""
    return ",".join(role_labels(roles))


def _credit_rows(
    deal: DealState, outcome: DealOutcome, model: ModelAttribution
) -> list[dict[str, Any]]:
    assert outcome.credits is not None  # a model attribution comes from credits
    roles = outcome.credits.roles
    return [
        {
            "model_id": model.model_id,
            "deal_id": deal.deal_id,
            "touch_event_id": touch.event_id,
            "position": position,
            "campaign_id": touch.campaign_id,
            "roles": _labels(roles[position]),
            "weight": model.weights[position],
            "credit_minor": model.credits[position],
            "closed_at": deal.closed_at,
        }
        for position, touch in enumerate(outcome.journey)
    ]


def _influence_touches(outcome: DealOutcome) -> list[InfluenceTouch]:
    """The deal's journey touches as the influence rollup reads them (day of close, lead)."""
    assert outcome.credits is not None and outcome.state.closed_at is not None  # credited
    day = utc_day(outcome.state.closed_at)
    roles = outcome.credits.roles
    return [
        (outcome.state.deal_id, touch.campaign_id, day, LEAD_CREATION in roles[position])
        for position, touch in enumerate(outcome.journey)
    ]


def _remove_rows(
    session: Session, deal_ids: Sequence[str], model_ids: Sequence[str]
) -> tuple[dict[RollupSpec, list[Entry]], list[dict[str, Any]]]:
    """Delete the deals' contact roles, and their credits and attributions under the models;
    return the rollup entries of the rows deleted (exactly those: ``DELETE … RETURNING``),
    and the influence pairs of those rows."""
    condition = among(session, CreditRow.deal_id, deal_ids)
    condition &= among(session, CreditRow.model_id, model_ids)
    credits, touches = delete_credits(session, condition)
    condition = among(session, DealAttributionRow.deal_id, deal_ids)
    condition &= among(session, DealAttributionRow.model_id, model_ids)
    attributions, amounts = delete_attributions(session, condition)
    removed = {CREDITS: credits, ATTRIBUTIONS: attributions}
    session.execute(
        delete(DealContactRow)
        .where(among(session, DealContactRow.deal_id, deal_ids))
        .execution_options(synchronize_session=False)
    )
    return removed, influence_pairs(touches, amounts)


def _deal_rows(session: Session, deal_ids: Sequence[str]) -> list[Any]:
    """Return the stored rows of the deals, as the won rollup reads them, before an upsert.

    Exact because no other transaction recomputes these deals meanwhile (the caller's
    per-deal rule).
    """
    query = select(*WON_COLUMNS).where(among(session, DealRow.deal_id, deal_ids))
    return [row._mapping for row in session.execute(query)]
