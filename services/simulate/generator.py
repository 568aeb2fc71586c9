"""Synthetic but realistic B2B CRM traffic as canonical events (contract §1).

``generate`` is pure and deterministic: the same arguments give the same events with the same
ids, so sending a simulation twice adds nothing (known ``event_id``s are duplicates). Every id
holds the seed and a digest of all the arguments, so two different simulations never collide.

What one run contains:
- 12-40 campaigns over nine channels (``outbound_sales`` is sales-sourced), a few renamed
  later; monthly costs (events: one-off, for their dates) in mixed currencies, a few adjusted;
- a daily ``fx.rate`` from every other currency to the reporting one, ~10% given as the inverse
  pair;
- per deal one account with 1-4 contacts and 2-12 touches spread over the weeks before the deal
  and while it is worked (some account-level), contacts moving lead → mql → sql → opportunity →
  customer; amount and stage updates; exactly 40% won, 30% lost, 30% open, and ~6% of the won
  ones closed, reopened and won again;
- duplicate contacts later merged, contacts that change account after a deal, and accounts
  that never reach a deal.

Every timestamp falls in ``[start, start + days)``. Events come back in ``occurred_at`` order,
and ``event_id``s sort in the same order, so ties resolve as they were generated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.simulate.journeys import add_deals, add_prospects
from services.simulate.world import Simulation


def generate(
    *,
    seed: int,
    deals: int,
    start: datetime,
    days: int = 120,
    currencies: tuple[str, ...] = ("USD", "EUR", "GBP"),
    reporting_currency: str = "USD",
) -> list[dict[str, Any]]:
    """Return a simulated CRM history of ``deals`` deals as canonical event dicts, in order."""
    sim = Simulation(
        seed=seed,
        deals=deals,
        start=start,
        days=days,
        currencies=currencies,
        reporting_currency=reporting_currency,
    )
    sim.add_campaigns()
    sim.add_fx_rates()
    sim.add_costs()
    add_prospects(sim)
    add_deals(sim)
    return sim.events()
