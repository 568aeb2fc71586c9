"""Full recompute: every won deal's exact credits under the ten positional and time-decay models.

Seeded synthetic journeys (N won deals, 1-19 touches each, 10 on average, over 40 campaigns
in 8 channels, 70 % with a touch flagged ``lead_created``, amounts in cents) are handed, as
the pure domain's inputs, to:

- ours: ``deal_credits`` (roles, weights, exact largest-remainder split for each of the 10
  models) for every deal, then the credits summed per model and campaign. ``ours_s`` starts
  from empty caches every run (a fresh worker, ``closedloop recompute``); ``ours_warm_s``
  reuses the per-shape weights and remainder splits the runs left behind (a long-lived
  worker). ``ours_5_models_s``: the five models the anchor has, for a like-for-like figure.
- the anchor, ``marketing-attribution-models`` (``mam.MAM``): its five heuristic models
  (first click, last click, linear, position based, time decay with the same 7-day half-life)
  on the same journeys, building its input frame included (one row per touch: deal, time,
  campaign as its "channel", the amount on the deal's first row). Its sums are floats, ours
  integer cents; both are cross-checked per campaign.

Ours runs in one Python thread; the anchor is polars (Rust, multithreaded on both cores).
``attribute_all_s`` times the per-touch ``attribute_all`` API (``TouchCredit`` objects with
exact ``Fraction`` weights, time decay through 50-digit decimals) at 100,000 touches.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from bench.common import timer
from services.domain.attribute import attribute_all, clear_caches, deal_credits
from services.domain.journey import Touch
from services.domain.models import AttributionModel, builtin_models

CAMPAIGNS = 40
CHANNELS = 8
START = datetime(2025, 1, 1, tzinfo=UTC)
HALF_LIFE_DAYS = 7.0
_CHUNK = 500  # deals whose credits are summed per campaign at once
# What the anchor's heuristics call the models it shares with ours.
MAM_RUNS = {
    "first_touch": "run_first_click",
    "last_touch": "run_last_click",
    "linear": "run_linear",
    "position_based": "run_position_based",
    "time_decay": "run_time_decay",
}


@dataclass(frozen=True)
class WonDeal:
    """A won deal as a recompute sees it: its ordered journey, dates and amount."""

    deal_id: str
    journey: tuple[Touch, ...]
    created_at: datetime
    closed_at: datetime
    amount_minor: int


def make_deals(touches: int, *, seed: int = 5) -> list[WonDeal]:
    """Seeded won deals with about ``touches`` touches in all (10 a deal on average)."""
    rng = random.Random(seed)
    campaigns = [(f"cmp-{i:02d}", f"channel-{i % CHANNELS}") for i in range(CAMPAIGNS)]
    deals: list[WonDeal] = []
    made = 0
    while made < touches:
        n = len(deals)
        closed_at = START + timedelta(seconds=rng.randrange(365 * 86_400))
        created_at = closed_at - timedelta(seconds=rng.randrange(5 * 86_400, 90 * 86_400))
        start = created_at - timedelta(days=60)
        span_us = int((closed_at - start) / timedelta(microseconds=1))
        count = min(rng.randint(1, 19), touches - made)
        lead = rng.randrange(count) if rng.random() < 0.7 else -1
        times = sorted(start + timedelta(microseconds=rng.randrange(span_us)) for _ in range(count))
        journey = []
        for i, at in enumerate(times):
            campaign, channel = rng.choice(campaigns)
            journey.append(Touch(f"t{n}-{i:02d}", at, campaign, channel, i == lead))
        deals.append(
            WonDeal(f"d{n}", tuple(journey), created_at, closed_at, rng.randint(50_000, 5_000_000))
        )
        made += count
    return deals


def _add_per_campaign(
    sums: dict[str, dict[str, int]], campaigns: list[str], flat: dict[str, list[int]]
) -> None:
    """Add credits (flat per model, touch i of campaign ``campaigns[i]``) to ``sums``."""
    positions: dict[str, list[int]] = {}
    for position, campaign in enumerate(campaigns):
        positions.setdefault(campaign, []).append(position)
    for campaign, where in positions.items():
        pick = itemgetter(*where, where[0])  # at least two items: always a tuple
        for model_id, credits in flat.items():
            totals = sums[model_id]
            picked = pick(credits)
            totals[campaign] = totals.get(campaign, 0) + sum(picked) - picked[-1]


def ours(deals: Sequence[WonDeal], models: Sequence[AttributionModel]) -> dict[str, dict[str, int]]:
    """Every deal's exact credits under every model, summed per model and campaign.

    The sums run in C (``itemgetter`` and ``sum``) over chunks of deals small enough for the
    fresh credits to still be in cache, rather than as ten million Python additions.
    """
    sums: dict[str, dict[str, int]] = {m.model_id: {} for m in models}
    for start in range(0, len(deals), _CHUNK):
        flat: dict[str, list[int]] = {m.model_id: [] for m in models}
        campaigns: list[str] = []
        for deal in deals[start : start + _CHUNK]:
            result = deal_credits(
                deal.journey,
                amount_minor=deal.amount_minor,
                created_at=deal.created_at,
                closed_at=deal.closed_at,
                models=models,
            )
            for model_id, credits in result.credits.items():
                flat[model_id] += credits
            campaigns += [t.campaign_id for t in deal.journey]
        _add_per_campaign(sums, campaigns, flat)
    return sums


def ours_attribute_all(
    deals: Sequence[WonDeal], models: Sequence[AttributionModel]
) -> dict[str, dict[str, int]]:
    """The same through the per-touch ``attribute_all`` API (``TouchCredit`` objects)."""
    totals: dict[str, dict[str, int]] = {m.model_id: {} for m in models}
    for deal in deals:
        result = attribute_all(
            deal.journey,
            amount_minor=deal.amount_minor,
            created_at=deal.created_at,
            closed_at=deal.closed_at,
            models=models,
        )
        for model_id, lines in result.items():
            sums = totals[model_id]
            for line in lines:
                campaign = line.touch.campaign_id
                sums[campaign] = sums.get(campaign, 0) + line.credit_minor
    return totals


def anchor(deals: Sequence[WonDeal]) -> dict[str, dict[str, float]]:
    """The anchor's five heuristic models on the same journeys, its input frame included."""
    import mam
    import polars as pl

    # The columns are built as cheaply as we found (of appends, whole-list extends, and
    # datetimes, floats or integer microseconds for the time column).
    deal_ids: list[str] = []
    micros: list[int] = []
    campaigns: list[str] = []
    values: list[int] = []
    microsecond = timedelta(microseconds=1)
    for deal in deals:
        count = len(deal.journey)
        deal_ids += [deal.deal_id] * count
        micros += [(t.occurred_at - START) // microsecond for t in deal.journey]
        campaigns += [t.campaign_id for t in deal.journey]
        values += [deal.amount_minor] + [0] * (count - 1)
    frame = pl.DataFrame(
        {
            "deal": deal_ids,
            "at": pl.Series(micros, dtype=pl.Int64).cast(pl.Datetime("us")),
            "campaign": campaigns,
            "won": pl.Series([True] * len(deal_ids), dtype=pl.Boolean),
            "amount": values,
        }
    )
    # Session format: MAM groups the rows per deal in time order. Its time decay measures
    # age back from the journey's last touch, not the close; after normalising within the
    # journey the common factor 2^(-(close - last)/half-life) cancels, so the weights agree.
    model = mam.MAM(
        frame,
        "session",
        "campaign",
        "won",
        datetime_colname="at",
        user_id_colname="deal",
        conversion_value_colname="amount",
    )
    out: dict[str, dict[str, float]] = {}
    for model_id, method in MAM_RUNS.items():
        kwargs = {"half_life_hours": HALF_LIFE_DAYS * 24} if model_id == "time_decay" else {}
        table = getattr(model, method)(**kwargs).to_dict()
        out[model_id] = dict(zip(map(str, table["channels"]), table["attribution"], strict=True))
    return out


def compare(
    deals: Sequence[WonDeal], mine: dict[str, dict[str, int]], theirs: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """How far the anchor's per-campaign totals are from ours, over the models both have.

    Each of our credits is within a cent of its exact real share, so a campaign's total may
    differ from a float implementation's by up to one cent per touch of the campaign.
    """
    touches: dict[str, int] = {}
    for deal in deals:
        for touch in deal.journey:
            touches[touch.campaign_id] = touches.get(touch.campaign_id, 0) + 1
    worst, within = 0.0, True
    for model_id, sums in theirs.items():
        for campaign in set(sums) | set(mine[model_id]):
            gap = abs(mine[model_id].get(campaign, 0) - sums.get(campaign, 0.0))
            worst = max(worst, gap)
            allowed = touches.get(campaign, 0) + 1e-6 * abs(sums.get(campaign, 0.0))
            within = within and gap <= allowed
    return {"max_campaign_difference_cents": round(worst, 2), "agrees_within_rounding": within}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    with timer() as elapsed:
        result = fn()
        return elapsed(), result


def _median(runs: int, fn: Callable[[], tuple[float, Any]]) -> tuple[float, list[float], Any]:
    """Run a timed function ``runs`` times: the median seconds, all of them, the last result."""
    figures, result = [], None
    for _ in range(runs):
        seconds, result = fn()
        figures.append(seconds)
    return statistics.median(figures), figures, result


def _cold(deals: Sequence[WonDeal], models: Sequence[AttributionModel]) -> tuple[float, Any]:
    """Time ``ours`` from empty caches (as a fresh worker or ``closedloop recompute`` runs)."""
    clear_caches()
    return _timed(lambda: ours(deals, models))


def _size(touches: int, runs: int, models: Sequence[AttributionModel]) -> dict[str, Any]:
    deals = make_deals(touches)
    row: dict[str, Any] = {
        "touches": sum(len(d.journey) for d in deals),
        "deals": len(deals),
        "runs": runs,
    }
    row["ours_s"], row["ours_runs_s"], mine = _median(runs, lambda: _cold(deals, models))
    row["ours_warm_s"], _ = _timed(lambda: ours(deals, models))  # caches filled by the runs
    try:
        anchor(deals[:50])  # imports and polars' thread pool, outside the timing
        row["anchor_s"], row["anchor_runs_s"], theirs = _median(
            runs, lambda: _timed(lambda: anchor(deals))
        )
    except ImportError as exc:
        row["anchor"] = f"not installed: {exc}"
        return row
    row["speedup_vs_anchor"] = round(row["anchor_s"] / row["ours_s"], 2)
    row["speedup_warm_vs_anchor"] = round(row["anchor_s"] / row["ours_warm_s"], 2)
    row.update(compare(deals, mine, theirs))
    shared = [m for m in models if m.model_id in MAM_RUNS]
    row["ours_5_models_s"], _, _ = _median(runs, lambda: _cold(deals, shared))
    return row


def run(*, quick: bool) -> dict[str, Any]:
    """Time a full recompute (ours, 10 models) against the anchor's heuristics, by size."""
    models = builtin_models(half_life_days=HALF_LIFE_DAYS)
    sizes = [2_000] if quick else [10_000, 100_000, 1_000_000]
    out: dict[str, Any] = {
        "models": [m.model_id for m in models],
        "anchor_models": list(MAM_RUNS),
        "sizes": [_size(touches, 3 if touches >= 1_000_000 else 1, models) for touches in sizes],
    }
    headline = out["sizes"][-1]
    keys = ("touches", "ours_s", "ours_warm_s", "ours_5_models_s", "anchor_s")
    for key in (*keys, "speedup_vs_anchor", "speedup_warm_vs_anchor"):
        out[key] = headline.get(key)
    small = make_deals(2_000 if quick else 100_000)
    out["attribute_all_touches"] = sum(len(d.journey) for d in small)
    out["attribute_all_s"], _ = _timed(lambda: ours_attribute_all(small, models))
    return out
