"""A simulated deal's own events: created, worked (stage and amount updates), then decided.

Amounts: lognormal around $26k times the account segment's size factor (smb 0.5, mid-market
1.1, enterprise 2.5), clamped to $3k-$400k, in the deal's currency (55% the reporting one).
A reopened deal is first decided (won or lost) part-way, reopened, then won at its end.
"""

from __future__ import annotations

import math

from services.simulate.catalog import DEAL_STAGES
from services.simulate.world import HOUR, Fields, Simulation


def deal_events(
    sim: Simulation,
    account: str,
    contact_ids: list[str],
    *,
    outcome: str,
    reopen: bool,
    created: int,
    end: int,
    size: float,
) -> int | None:
    """Emit the deal's own events; return when it was first won (None if never won)."""
    rng = sim.rng
    deal_id = sim.new_id("deal")
    currency = _deal_currency(sim)
    scale = sim.usd[currency]
    typical = rng.lognormvariate(math.log(26_000), 0.65) * size
    amount = _round_to(min(max(typical, 3_000), 400_000) / scale, 50)
    sim.emit(
        created,
        "deal.created",
        {
            "deal_id": deal_id,
            "account_id": account,
            "amount": sim.exact(amount, currency),
            "currency": currency,
            "contact_ids": contact_ids,
            "stage": "qualification",
        },
    )
    first_close = created + int((end - created) * rng.uniform(0.5, 0.6)) if reopen else end
    updates = rng.randint(0, 2) if outcome == "open" else rng.randint(1, 3)
    for i, at in enumerate(
        sorted(sim.between(created + HOUR, first_close - HOUR) for _ in range(updates))
    ):
        fields: Fields = {"deal_id": deal_id, "stage": DEAL_STAGES[min(i, len(DEAL_STAGES) - 1)]}
        if rng.random() < 0.4:
            amount = max(_round_to(amount * rng.uniform(0.75, 1.3), 250), 500 / scale)
            fields |= {"amount": sim.exact(amount, currency), "currency": currency}
        sim.emit(at, "deal.updated", fields)
    if outcome == "open":
        return None
    if outcome == "lost":
        sim.emit(end, "deal.closed_lost", {"deal_id": deal_id})
        return None
    won_at = end
    if reopen:
        first_status = rng.choice(("deal.closed_won", "deal.closed_lost"))
        sim.emit(first_close, first_status, {"deal_id": deal_id})
        reopened_at = sim.between(first_close + HOUR, first_close + (end - first_close) // 2)
        sim.emit(reopened_at, "deal.reopened", {"deal_id": deal_id})
        if rng.random() < 0.6:
            amount = _round_to(amount * rng.uniform(0.85, 1.15), 50)
            sim.emit(
                sim.between(reopened_at + HOUR, end - HOUR),
                "deal.updated",
                {
                    "deal_id": deal_id,
                    "amount": sim.exact(amount, currency),
                    "currency": currency,
                    "stage": "negotiation",
                },
            )
        won_at = first_close if first_status == "deal.closed_won" else end
    won: Fields = {"deal_id": deal_id}
    if rng.random() < 0.65:  # the final amount, sometimes after a discount
        final = _round_to(amount * rng.choice((1.0, 1.0, 1.0, 0.95, 0.9)), 50)
        won |= {"amount": sim.exact(final, currency), "currency": currency}
    if rng.random() < 0.2:
        won["account_id"] = account
    sim.emit(end, "deal.closed_won", won)
    return won_at


def _deal_currency(sim: Simulation) -> str:
    weights = [
        55 if c == sim.reporting else 45 / max(1, len(sim.currencies) - 1) for c in sim.currencies
    ]
    return sim.rng.choices(sim.currencies, weights=weights)[0]


def _round_to(value: float, step: float) -> float:
    """Round to a whole multiple of ``step`` (at least one step)."""
    return max(step, round(value / step) * step)
