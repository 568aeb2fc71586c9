"""A deal's outcome: its conversion, journey and credits under every model, from its state.

``deal_outcome`` is the one rule both the worker (``services.attribution.credits``, from the
database) and the whole-history specification (``services.domain.history``) apply to a deal.

Invariants:
- Only a won deal has a conversion: ``converted`` when its amount converts into the
  reporting currency at its close date (contract §5), else ``unconverted``, with no journey
  and no credits (never converted at 1.0, never dropped).
- A converted deal's journey is its candidates cut to ``[C - lookback, W]`` and ordered
  (contract §2); per model its credits sum to ``reporting_minor`` exactly, or to 0 for an
  empty journey (the deal is then unattributed: ``unattributed_minor`` = its amount).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from .attribute import DealCredits, deal_credits
from .journey import Touch, select_journey
from .models import AttributionModel
from .state import STATUS_WON, DealState, Rate, convert_won_deal

CONVERTED, UNCONVERTED = "converted", "unconverted"


class ModelAttribution(NamedTuple):
    """One model's credits of a converted deal: per journey touch, and their split."""

    model_id: str
    fit_id: int | None  # the snapshot of a data-driven model
    credits: list[int]
    weights: Sequence[float]
    attributed_minor: int
    unattributed_minor: int


@dataclass(frozen=True)
class DealOutcome:
    """A deal as the reports see it.

    ``conversion`` is None unless the deal is won; ``reporting_minor``, ``rate`` and
    ``rate_date`` are set only when it converted (``rate_date`` only for a deal in another
    currency than the reporting one).
    """

    state: DealState
    conversion: str | None = None
    reporting_minor: int | None = None
    rate: Decimal | None = None
    rate_date: date | None = None
    journey: tuple[Touch, ...] = ()
    credits: DealCredits | None = None
    models: tuple[AttributionModel, ...] = ()

    def attributions(self) -> Iterator[ModelAttribution]:
        """Yield each model's credits of a converted deal (nothing for any other deal)."""
        if self.credits is None or self.reporting_minor is None:
            return
        for model in self.models:
            amounts = self.credits.credits.get(model.model_id, [])
            attributed = sum(amounts)
            yield ModelAttribution(
                model.model_id,
                getattr(model, "fit_id", None),
                amounts,
                self.credits.weights.get(model.model_id, ()),
                attributed,
                self.reporting_minor - attributed,
            )


def deal_outcome(
    deal: DealState,
    candidates: Sequence[Touch],
    *,
    rates: Sequence[Rate],
    models: Sequence[AttributionModel],
    reporting_currency: str,
    lookback: timedelta,
) -> DealOutcome:
    """Convert a deal, cut its journey from ``candidates`` and credit it under ``models``.

    ``candidates`` are the touches that belong to the deal (by account or contact role), in
    any order and possibly outside its window; ``rates`` hold at least those of its currency.
    """
    if deal.status != STATUS_WON:
        return DealOutcome(deal)
    conv = convert_won_deal(deal, target=reporting_currency, rates=rates)
    if conv.amount_minor is None:
        # No usable rate, or won without any amount: reported, never silently dropped.
        return DealOutcome(deal, UNCONVERTED)
    assert deal.closed_at is not None and deal.journey_start is not None
    journey = select_journey(
        candidates, created_at=deal.journey_start, closed_at=deal.closed_at, lookback=lookback
    )
    credits = deal_credits(
        journey,
        amount_minor=conv.amount_minor,
        created_at=deal.journey_start,
        closed_at=deal.closed_at,
        models=models,
    )
    return DealOutcome(
        deal,
        CONVERTED,
        conv.amount_minor,
        conv.rate,
        conv.rate_date if deal.currency != reporting_currency else None,
        tuple(journey),
        credits,
        tuple(models),
    )
