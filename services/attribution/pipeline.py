"""The pipeline snapshot (contract §6): open deals' amounts credited like won deals', cut at now.

Invariants:
- One snapshot is one transaction: ``pipeline_credits``, their sums per (model, campaign,
  stage) in ``pipeline_rollups`` (what the report reads) and ``pipeline_deals`` are replaced
  whole, the snapshot's time and the models it credited are recorded (``system_state`` key
  ``pipeline_snapshot``, JSON: the report's ``as_of``, which models are ``ready``, and the
  projection version the snapshot is current with), and the projection version is bumped with
  them, so a reader sees one whole snapshot, never a mix. A snapshot is recomputed only when
  the projection moved past that version, by whichever worker comes first.
- An open deal's journey is built like a won deal's, ending at the snapshot's time (contract
  §2): C is its ``deal.created`` time (the snapshot's time when none arrived, as a won deal's
  C falls back to its close), touches in [C − lookback, now]; time decay ages touches from
  now. The same domain functions credit it, so per model its credits sum to its converted
  amount exactly (§3).
- Its amount converts at the latest rate on or before the snapshot's day (§5's rule, with
  today in place of the close date). No usable rate: it is left out of the pipeline and kept
  as ``unconverted``, never converted at 1.0. Open deals without an amount are not pipeline.
- Every active model is credited (built-ins, data-driven models at their fit in force, custom
  models); a data-driven model before its first fit has no pipeline credits yet.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.attribution.registry import active_models
from services.attribution.state_store import load_rates
from services.core.db.journeys import journey_candidates
from services.core.db.schema import (
    DealContactRow,
    DealRow,
    PipelineCreditRow,
    PipelineDealRow,
    PipelineRollupRow,
    SystemStateRow,
)
from services.core.db.upsert import among, insert_new, upsert
from services.core.db.version import bump_projection_version, projection_version
from services.core.settings import Settings
from services.domain import AttributionModel, select_journey
from services.domain.attribute import deal_credits
from services.domain.state import STATUS_OPEN, DealState, Rate, convert

PIPELINE_SNAPSHOT_KEY = "pipeline_snapshot"
CONVERTED, UNCONVERTED = "converted", "unconverted"
_CHUNK = 1000  # open deals whose journeys are fetched together


@dataclass(frozen=True)
class PipelineSnapshot:
    """What one computation wrote; ``current`` if no other writer committed meanwhile."""

    computed_at: datetime
    open_deals: int
    unconverted: int
    credits: int
    version: str
    current: bool


def snapshot_value(
    computed_at: datetime, models: Sequence[AttributionModel], *, version: str | None
) -> str:
    """Return the stored description of a snapshot: its time, the models it credited, and the
    projection version it is up to date with (null when a batch raced it)."""
    return orjson.dumps(
        {
            "computed_at": computed_at.isoformat().replace("+00:00", "Z"),
            "models": [m.model_id for m in models],
            "version": version,
        }
    ).decode()


def snapshot_is_current(session: Session) -> bool:
    """Return whether the stored snapshot is up to date with the projection (no change since)."""
    row = session.get(SystemStateRow, PIPELINE_SNAPSHOT_KEY, populate_existing=True)
    if row is None:
        return False
    return bool(orjson.loads(row.value).get("version") == projection_version(session))


def _open_deals(session: Session) -> list[DealRow]:
    return list(
        session.scalars(
            select(DealRow)
            .where(
                DealRow.status == STATUS_OPEN,
                DealRow.amount_minor.is_not(None),
                DealRow.currency.is_not(None),
            )
            .order_by(DealRow.deal_id)
        )
    )


def _chunks(rows: Sequence[DealRow]) -> Iterator[Sequence[DealRow]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


def _as_open(row: DealRow, contact_ids: tuple[str, ...], now: datetime) -> DealState:
    """The deal as a journey ending now (``closed_at`` = now, as fitting does for a loss)."""
    return DealState(
        deal_id=row.deal_id,
        account_id=row.account_id,
        status=row.status,
        created_at=row.created_at or now,
        closed_at=now,
        contact_ids=contact_ids,
    )


def _contacts(session: Session, deal_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for deal_id, contact_id in session.execute(
        select(DealContactRow.deal_id, DealContactRow.contact_id).where(
            among(session, DealContactRow.deal_id, deal_ids)
        )
    ):
        found.setdefault(deal_id, []).append(contact_id)
    return {d: tuple(sorted(c)) for d, c in found.items()}


def _credit_chunk(
    session: Session,
    rows: Sequence[DealRow],
    *,
    settings: Settings,
    models: Sequence[AttributionModel],
    rates: Sequence[Rate],
    now: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the deal rows and the credit rows of one chunk of open deals."""
    lookback = timedelta(days=settings.lookback_days)
    reporting = settings.reporting_currency
    contacts = _contacts(session, [r.deal_id for r in rows])
    states = {r.deal_id: _as_open(r, contacts.get(r.deal_id, ()), now) for r in rows}
    candidates = journey_candidates(session, list(states.values()), lookback=lookback)
    deal_rows: list[dict[str, Any]] = []
    credit_rows: list[dict[str, Any]] = []
    for row in rows:
        assert row.amount_minor is not None and row.currency is not None  # by the query
        state = states[row.deal_id]
        assert state.created_at is not None
        conv = convert(
            row.amount_minor, source=row.currency, target=reporting, on=now.date(), rates=rates
        )
        journey = select_journey(
            candidates.get(row.deal_id, []),
            created_at=state.created_at,
            closed_at=now,
            lookback=lookback,
        )
        deal_rows.append(
            {
                "deal_id": row.deal_id,
                "stage": row.stage,
                "amount_minor": row.amount_minor,
                "currency": row.currency,
                "reporting_minor": conv.amount_minor,
                "conversion": UNCONVERTED if conv.amount_minor is None else CONVERTED,
                "journey_touches": len(journey),
                "computed_at": now,
            }
        )
        if conv.amount_minor is None or not journey:
            continue
        result = deal_credits(
            journey,
            amount_minor=conv.amount_minor,
            created_at=state.created_at,
            closed_at=now,
            models=models,
        )
        for model in models:
            amounts = result.credits[model.model_id]
            weights = result.weights[model.model_id]
            credit_rows += [
                {
                    "model_id": model.model_id,
                    "deal_id": row.deal_id,
                    "touch_event_id": touch.event_id,
                    "campaign_id": touch.campaign_id,
                    "stage": row.stage,
                    "credit_minor": amounts[position],
                    "weight": weights[position],
                    "computed_at": now,
                }
                for position, touch in enumerate(journey)
            ]
    return deal_rows, credit_rows


def pipeline_sums(credit_rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Sum credit rows per (model, campaign, stage): credits exactly, weights with ``fsum``."""
    credits: dict[tuple[str, str, str | None], int] = defaultdict(int)
    weights: dict[tuple[str, str, str | None], list[float]] = defaultdict(list)
    for row in credit_rows:
        key = (row["model_id"], row["campaign_id"], row["stage"])
        credits[key] += row["credit_minor"]
        weights[key].append(row["weight"])
    return [
        {
            "model_id": model_id,
            "campaign_id": campaign_id,
            "stage": stage,
            "credit_minor": total,
            "weight": math.fsum(weights[model_id, campaign_id, stage]),
            "credits": len(weights[model_id, campaign_id, stage]),
        }
        for (model_id, campaign_id, stage), total in credits.items()
    ]


def compute_pipeline(session: Session, settings: Settings, now: datetime) -> PipelineSnapshot:
    """Credit every open deal with an amount as of ``now`` and replace the snapshot with it.

    Runs in the caller's transaction and never commits. ``current`` says whether the
    projection version was still the one read at the start when the snapshot was written
    (else a batch committed meanwhile and the caller should compute again).
    """
    now = now.astimezone(UTC)
    before = projection_version(session)
    models = active_models(session, settings)
    deals = _open_deals(session)
    rates = load_rates(
        session, {d.currency for d in deals if d.currency}, settings.reporting_currency
    )
    deal_rows: list[dict[str, Any]] = []
    credit_rows: list[dict[str, Any]] = []
    for chunk in _chunks(deals):
        chunk_deals, chunk_credits = _credit_chunk(
            session, chunk, settings=settings, models=models, rates=rates, now=now
        )
        deal_rows += chunk_deals
        credit_rows += chunk_credits
    current = projection_version(session) == before
    for table in (PipelineCreditRow, PipelineDealRow, PipelineRollupRow):
        session.execute(delete(table).execution_options(synchronize_session=False))
    insert_new(session, PipelineDealRow, deal_rows)
    insert_new(session, PipelineCreditRow, credit_rows)
    insert_new(session, PipelineRollupRow, pipeline_sums(credit_rows))
    bump_projection_version(session)
    version = projection_version(session)
    # Stored with the version it leaves the projection at: any worker's next pass skips while
    # nothing else changed (comparing with its own last snapshot instead, several workers
    # would recompute after one another's bumps forever).
    value = snapshot_value(now, models, version=version if current else None)
    upsert(
        session,
        SystemStateRow,
        [{"key": PIPELINE_SNAPSHOT_KEY, "value": value, "updated_at": now}],
    )
    return PipelineSnapshot(
        computed_at=now,
        open_deals=len(deal_rows),
        unconverted=sum(1 for d in deal_rows if d["conversion"] == UNCONVERTED),
        credits=len(credit_rows),
        version=version,
        current=current,
    )
