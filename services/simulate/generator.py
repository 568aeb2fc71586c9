"""Synthetic but realistic B2B CRM traffic as canonical events (contract §1).

``generate`` is pure and deterministic: the same arguments give the same events with the same
ids, so sending a simulation twice adds nothing (known ``event_id``s are duplicates). Every id
holds the seed and a digest of all the arguments, so two different simulations never collide.

What one run contains:
- 12-40 campaigns over nine channels (``outbound_sales`` is sales-sourced), a few renamed
  later; monthly costs (events: one-off, for their dates) in mixed currencies, a few adjusted;
- a daily ``fx.rate`` from every other currency to the reporting one, ~10% given as the inverse
  pair;
- per deal one account (``account.upserted`` with industry, segment, employees band and
  country; ~12% enriched with employees and country days later, ~6% growing a band later) with
  1-4 contacts (``attributes``: title, seniority, department; ~3% promoted later) and 2-12
  touches spread over the weeks before the deal and while it is worked (some account-level);
- exactly 40% of deals won, 30% lost, 30% open, and ~6% of the won ones closed, reopened and
  won again. Which decided deals are won depends on fit: P(won | decided) = σ(fit − t) with
  fit the log-odds of industry (software +0.7 … retail −0.7), segment (enterprise +0.7,
  mid-market +0.2, smb −0.6) and the primary contact's seniority (c-level and VP +0.5 … staff
  −0.5); country and department carry none. With seed 11 and 600 deals the decided deals' win
  share is 73% for enterprise, 66% mid-market, 42% smb; 75% software, 39% retail. Deal
  amounts scale with the segment (smb ×0.5, enterprise ×2.5);
- contacts' lifecycle: ~18% start as ``subscriber`` (most from email and content), then lead →
  mql → sql → opportunity → customer; ~11% are ``recycled`` after mql or sql (about a third
  come back as mqls) and ~5% ``disqualified``. After an MQL sales responds (a call, sales
  email or meeting of a sales-sourced campaign, or a stage change to sql, recycled or
  disqualified): each response is drawn ~72% within 24 hours, ~18% after 2-5 days, ~10%
  never, but a deal's primary contact is always accepted as an sql in the end, so overall
  ~74% of MQLs are answered within 24 hours, ~21% later and ~5% never (median ~4 h);
- duplicate contacts later merged, contacts that change account after a deal, and prospects:
  accounts and lone contacts that never reach a deal (~35% of their contacts become mqls and
  get sales's follow-up, ~5% are disqualified as junk).

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
