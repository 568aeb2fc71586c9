"""The reports finance reads, as the ledger expects them and as the API gives them.

Expected figures come from the project's independent reference (``tests/support/reference.py``:
standard library only, nothing from ``services``) over the events the ledger says must be in
the database. The API's figures are read over HTTP with a wide date range, as the dashboard
reads them. ``compare`` sets one against the other to the cent:

- ``GET /v1/reports/roi`` for each ROI model: per campaign revenue, cost and fractional deals,
  and the totals;
- ``GET /v1/reports/compare`` for every positional model at once: per campaign revenue;
- ``GET /v1/reports/reconciliation``: closed-won revenue and won deals.

A figure above the expected one means something was counted twice: each counts in ``above``.
Any difference, either way, is a mismatch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import httpx

from tests.support import reference

ROI_MODELS = ("linear", "first_touch")
COMPARE_MODELS = tuple(reference.MODELS)  # every positional model and time decay
# Wide enough for any simulated history: the reports count every deal and cost day.
WIDE = {"from": "2000-01-01", "to": "2100-01-01"}
DEALS_TOLERANCE = 0.5e-4 + 1e-9  # the API rounds fractional deals to 4 decimals


@dataclass
class Reports:
    """Per model and campaign: revenue (minor units) and deals; per campaign: cost."""

    revenue: dict[str, dict[str, int]] = field(default_factory=dict)
    deals: dict[str, dict[str, float]] = field(default_factory=dict)
    cost: dict[str, int] = field(default_factory=dict)
    won_revenue: int = 0
    won_deals: int = 0
    statuses: dict[str, str] = field(default_factory=dict)  # API only: model -> status
    roi_cost: dict[str, dict[str, int]] = field(default_factory=dict)  # API only: per ROI model


@dataclass
class Diff:
    """Where the API's reports differ from the ledger's, and how many figures were compared."""

    mismatches: list[str] = field(default_factory=list)
    above: int = 0
    compared: int = 0

    def figure(self, what: str, got: float, want: float, *, tolerance: float = 0.0) -> None:
        """Compare one figure; a difference is a mismatch, and above also a double count."""
        self.compared += 1
        if abs(got - want) > tolerance:
            self.mismatches.append(f"{what}: API {got}, ledger {want}")
            if got > want:
                self.above += 1


def expected(
    events: list[dict[str, Any]],
    *,
    currency: str = "USD",
    lookback_days: int = 180,
    half_life_days: float = 7.0,
) -> Reports:
    """The reports over ``events`` as the independent reference computes them."""
    ref = reference.compute(
        events,
        reporting_currency=currency,
        lookback_days=lookback_days,
        half_life_days=half_life_days,
    )
    revenue: dict[str, dict[str, int]] = {m: defaultdict(int) for m in COMPARE_MODELS}
    weights: dict[str, dict[str, Fraction]] = {m: defaultdict(Fraction) for m in COMPARE_MODELS}
    out = Reports()
    for deal in ref.deals.values():
        if not deal.won or deal.reporting_minor is None:
            continue
        out.won_revenue += deal.reporting_minor
        out.won_deals += 1
        for model in COMPARE_MODELS:
            for campaign, credit in deal.credits.get(model, {}).items():
                revenue[model][campaign] += credit
            for campaign, weight in deal.weights.get(model, {}).items():
                weights[model][campaign] += weight
    out.revenue = {m: dict(v) for m, v in revenue.items()}
    out.deals = {m: {c: float(w) for c, w in v.items()} for m, v in weights.items()}
    cost: dict[str, int] = defaultdict(int)
    for (campaign, _day), minor in ref.cost_days.items():
        cost[campaign] += minor
    out.cost = dict(cost)
    return out


def minor(text: str, currency: str = "USD") -> int:
    """A decimal string of the API as exact minor units."""
    return reference.to_minor(text, currency)


def fetch(api_url: str, key: str, *, timeout_s: float = 60.0) -> Reports:
    """Read ROI, compare and reconciliation from the API, every row, over the wide range."""
    headers = {"Authorization": f"Bearer {key}"}
    out = Reports()
    with httpx.Client(base_url=api_url, headers=headers, timeout=timeout_s) as http:

        def get(path: str, **params: str) -> dict[str, Any]:
            response = http.get(path, params={**WIDE, **params})
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        for model in ROI_MODELS:
            body = get("/v1/reports/roi", model=model, group_by="campaign")
            out.statuses[model] = body["status"]
            out.revenue[f"roi:{model}"] = {
                r["campaign_id"]: minor(r["revenue"]) for r in body["rows"]
            }
            out.deals[model] = {r["campaign_id"]: float(r["deals"]) for r in body["rows"]}
            out.roi_cost[model] = {r["campaign_id"]: minor(r["cost"]) for r in body["rows"]}
            out.revenue[f"roi-total:{model}"] = {"": minor(body["totals"]["revenue"])}
        body = get("/v1/reports/compare", models=",".join(COMPARE_MODELS), group_by="campaign")
        for model in COMPARE_MODELS:
            out.statuses.setdefault(model, body["status"][model])
            out.revenue[model] = {
                r["campaign_id"]: minor(r["revenue"][model]) for r in body["rows"]
            }
        body = get("/v1/reports/reconciliation")
        out.won_revenue, out.won_deals = minor(body["closed_won_revenue"]), body["won_deals"]
    return out


def compare(want: Reports, got: Reports) -> Diff:
    """Every figure of ``got`` (the API) against ``want`` (the ledger), to the cent."""
    diff = Diff()
    for model in COMPARE_MODELS:
        _per_campaign(diff, f"compare {model}", got.revenue.get(model, {}), want.revenue[model])
    for model in ROI_MODELS:
        _per_campaign(
            diff, f"roi {model}", got.revenue.get(f"roi:{model}", {}), want.revenue[model]
        )
        total = got.revenue.get(f"roi-total:{model}", {}).get("", 0)
        diff.figure(f"roi {model} totals.revenue", total, sum(want.revenue[model].values()))
        got_deals, want_deals = got.deals.get(model, {}), want.deals[model]
        for campaign in sorted(set(got_deals) | set(want_deals)):
            diff.figure(
                f"roi {model} {campaign} deals",
                got_deals.get(campaign, 0.0),
                want_deals.get(campaign, 0.0),
                tolerance=DEALS_TOLERANCE,
            )
        _per_campaign(diff, f"roi {model} cost", got.roi_cost.get(model, {}), want.cost)
        status = got.statuses.get(model)
        if status != "ready":
            diff.mismatches.append(f"roi {model}: status {status!r}, expected 'ready'")
    diff.figure("reconciliation closed_won_revenue", got.won_revenue, want.won_revenue)
    diff.figure("reconciliation won_deals", got.won_deals, want.won_deals)
    return diff


def _per_campaign(diff: Diff, what: str, got: dict[str, int], want: dict[str, int]) -> None:
    for campaign in sorted(set(got) | set(want)):
        diff.figure(f"{what} {campaign}", got.get(campaign, 0), want.get(campaign, 0))
