"""The state of one simulation run: seeded randomness, ids, the event rows; campaigns, FX, costs.

Times are whole seconds after the run's start, always clamped into the window, so every event
falls in ``[start, start + days)``.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.core.money import check_currency, exponent, format_minor
from services.simulate.catalog import (
    CAMPAIGN_MIX,
    CHANNEL_BY_SLUG,
    CHANNELS,
    USD_VALUE,
    Channel,
)

DAY = 86_400
HOUR = 3_600
MIN_DAYS = 14
INVERSE_FX_SHARE = 0.10
FX_DAILY_VOLATILITY = 0.004
RENAME_SHARE = 0.10
COST_ADJUSTMENT_SHARE = 0.05

Fields = dict[str, Any]


class Simulation:
    """The mutable state of one ``generate`` call: a seeded RNG, id counters, emitted rows."""

    def __init__(
        self,
        *,
        seed: int,
        deals: int,
        start: datetime,
        days: int,
        currencies: tuple[str, ...],
        reporting_currency: str,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        if deals < 0:
            raise ValueError("deals must not be negative")
        if days < MIN_DAYS:
            raise ValueError(f"days must be at least {MIN_DAYS} (sales cycles need room)")
        if not currencies:
            raise ValueError("currencies must name at least one currency")
        self.currencies = tuple(dict.fromkeys(check_currency(c) for c in currencies))
        self.reporting = check_currency(reporting_currency)
        self.rng = random.Random(seed)
        self.deals = deals
        base = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        self.start = base.replace(microsecond=0)
        self.length = days * DAY
        arguments = (
            f"{seed}|{deals}|{self.start.isoformat()}|{days}|{self.currencies}|{self.reporting}"
        )
        self.tag = f"{seed}-{hashlib.sha256(arguments.encode()).hexdigest()[:6]}"
        self.usd = self._usd_values()
        self.campaigns: dict[str, list[str]] = {}  # channel slug -> campaign ids
        self.prospect_accounts: list[tuple[str, int]] = []  # (account id, created at)
        self._cost_plan: list[tuple[str, Channel, str]] = []
        self._rows: list[tuple[int, int, str, Fields]] = []
        self._counters: dict[str, int] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def new_id(self, kind: str) -> str:
        """Return the next id of an entity kind, e.g. ``deal-7-1a2b3c-00012``."""
        n = self._counters.get(kind, 0) + 1
        self._counters[kind] = n
        return f"{kind}-{self.tag}-{n:05d}"

    def emit(self, at: float, type_: str, fields: Fields) -> None:
        """Record an event at ``at`` seconds after start (clamped into the window)."""
        second = min(max(int(at), 0), self.length - 1)
        self._rows.append((second, len(self._rows), type_, fields))

    def between(self, low: float, high: float) -> int:
        """Return a uniform whole second in [low, high] (``low`` if the range is empty)."""
        return int(low) if high <= low else int(self.rng.uniform(low, high))

    def pick(self, weights: dict[str, int]) -> str:
        """Return a key of ``weights`` drawn in proportion to its weight."""
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def campaign_for(self, channel: str) -> str:
        """Return one of the channel's campaigns."""
        return self.rng.choice(self.campaigns[channel])

    def money(self, usd: float, currency: str) -> str:
        """Format a USD-denominated magnitude as an amount string in ``currency``."""
        major = usd / float(self.usd[currency])
        return self.exact(major, currency)

    def exact(self, major: float, currency: str) -> str:
        """Round a magnitude to the currency's minor unit and format it."""
        digits = exponent(currency)
        return format_minor(round(major * 10**digits), currency)

    def events(self) -> list[dict[str, Any]]:
        """Return the emitted rows as canonical event dicts, ordered and numbered."""
        rows = sorted(self._rows, key=lambda row: (row[0], row[1]))
        width = max(6, len(str(len(rows))))
        out: list[dict[str, Any]] = []
        for n, (at, _, type_, fields) in enumerate(rows, start=1):
            occurred = self.start + timedelta(seconds=at)
            out.append(
                {
                    "event_id": f"sim-{self.tag}-{n:0{width}d}",
                    "type": type_,
                    "occurred_at": occurred.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "source": "simulate",
                    **fields,
                }
            )
        return out

    def _usd_values(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for currency in sorted({*self.currencies, self.reporting}):
            known = USD_VALUE.get(currency)
            values[currency] = float(known) if known else round(self.rng.uniform(0.05, 2.0), 4)
        return values

    def _days(self) -> list[date]:
        first = self.start.date()
        last = (self.start + timedelta(seconds=self.length - 1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def offset(self, day: date, *, hour: float = 0) -> int:
        """Return the seconds from start to ``hour`` o'clock UTC on ``day``."""
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)
        return int((moment - self.start).total_seconds())

    # -- campaigns, FX and costs ------------------------------------------------------------

    def add_campaigns(self) -> None:
        """Emit 12-40 campaigns, every channel at least once, a few renamed later."""
        count = min(40, max(12, 12 + self.deals // 25 + self.rng.randint(-2, 3)))
        extra = self.rng.choices(
            list(CAMPAIGN_MIX), weights=list(CAMPAIGN_MIX.values()), k=count - len(CHANNELS)
        )
        names = {c.slug: self.rng.sample(c.names, len(c.names)) for c in CHANNELS}
        used: dict[str, int] = {}
        for slug in [c.slug for c in CHANNELS] + extra:
            channel = CHANNEL_BY_SLUG[slug]
            k = used.get(slug, 0)
            used[slug] = k + 1
            pool = names[slug]
            name = pool[k % len(pool)] + (f" #{k // len(pool) + 1}" if k >= len(pool) else "")
            campaign_id = self.new_id("cmp")
            self.campaigns.setdefault(slug, []).append(campaign_id)
            fields: Fields = {"campaign_id": campaign_id, "name": name, "channel": slug}
            if channel.sales_sourced:
                fields["is_sales_sourced"] = True
            self.emit(self.between(0, 2 * HOUR), "campaign.upserted", fields)
            if self.rng.random() < RENAME_SHARE:
                renamed = fields | {"name": f"{name} (relaunch)"}
                self.emit(
                    self.between(self.length * 0.3, self.length * 0.8), "campaign.upserted", renamed
                )
            self._cost_plan.append((campaign_id, channel, self._cost_currency()))

    def _cost_currency(self) -> str:
        if self.reporting in self.currencies and self.rng.random() < 0.7:
            return self.reporting
        return self.rng.choice(self.currencies)

    def add_fx_rates(self) -> None:
        """Emit a daily rate from every other currency to the reporting one (random walk)."""
        for currency in self.currencies:
            if currency == self.reporting:
                continue
            rate = self.usd[currency] / self.usd[self.reporting]
            for day in self._days():
                rate *= math.exp(self.rng.gauss(0.0, FX_DAILY_VOLATILITY))
                fields: Fields = {
                    "date": day.isoformat(),
                    "base": currency,
                    "quote": self.reporting,
                    "rate": _rate_text(rate),
                }
                if self.rng.random() < INVERSE_FX_SHARE:
                    fields |= {
                        "base": self.reporting,
                        "quote": currency,
                        "rate": _rate_text(1 / rate),
                    }
                self.emit(self.offset(day, hour=16) + self.between(0, 600), "fx.rate", fields)

    def add_costs(self) -> None:
        """Emit each campaign's spend: monthly periods, or one-off for events."""
        days = self._days()
        for campaign_id, channel, currency in self._cost_plan:
            low, high = channel.monthly_cost
            if channel.one_off_cost:
                first = self.rng.choice(days[: max(1, len(days) - 3)])
                periods = [(first, min(first + timedelta(days=self.rng.randint(0, 2)), days[-1]))]
            elif high == 0 or (low == 0 and self.rng.random() < 0.4):
                continue
            else:
                periods = _months(days[0], days[-1])
            for period_start, period_end in periods:
                span = (period_end - period_start).days + 1
                scale = 1.0 if channel.one_off_cost else span / 30
                usd = self.rng.uniform(max(low, 50), high) * scale
                self._cost(campaign_id, currency, usd, period_start, period_end)

    def _cost(self, campaign_id: str, currency: str, usd: float, first: date, last: date) -> None:
        fields: Fields = {
            "campaign_id": campaign_id,
            "amount": self.money(usd, currency),
            "currency": currency,
            "period_start": first.isoformat(),
            "period_end": last.isoformat(),
        }
        # Spend is booked when the invoice arrives, the day after the period; the window's last
        # period is booked on its last day instead, so that it still falls inside the window.
        booked = self.offset(last + timedelta(days=1), hour=9) + self.between(0, 4 * HOUR)
        if booked >= self.length:
            booked = self.between(self.offset(last, hour=6), self.length - 1)
        self.emit(booked, "campaign.cost", fields)
        if self.rng.random() < COST_ADJUSTMENT_SHARE:
            extra = fields | {"amount": self.money(usd * self.rng.uniform(0.02, 0.1), currency)}
            self.emit(booked + self.between(DAY, 5 * DAY), "campaign.cost", extra)


def _months(first: date, last: date) -> list[tuple[date, date]]:
    """Split [first, last] into calendar-month periods."""
    periods: list[tuple[date, date]] = []
    cursor = first
    while cursor <= last:
        following = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
        periods.append((cursor, min(following - timedelta(days=1), last)))
        cursor = following
    return periods


def _rate_text(rate: float) -> str:
    """Format an FX rate with six significant digits (at least six decimals)."""
    decimals = max(6, 5 - math.floor(math.log10(rate)))
    return f"{rate:.{decimals}f}"
