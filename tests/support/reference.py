"""An independent reference implementation of Closed Loop's attribution semantics.

Written from the contract (``/work/shared/contract.md`` §1–§5) and the team's decisions where
the contract is open, for end-to-end tests to compare the running service against.

Deliberately independent of the service: it imports nothing from ``services`` and uses only the
standard library. It favours plain, obviously-correct code over speed. It reads canonical event
dicts as they are sent over the wire (JSON-like: RFC 3339 timestamps with an offset, decimal
strings for money, ``YYYY-MM-DD`` dates), in any order and possibly with duplicates.

Rules implemented (summary):

1. Events are deduplicated by ``event_id`` (the first occurrence is kept) and processed in
   (``occurred_at`` in UTC, ``event_id``) order.
2. Money is held in minor units with the ISO 4217 exponent of its currency.
3. Campaigns: the latest event carrying a field wins; ``is_sales_sourced`` defaults to False.
4. Contacts: ``account_id`` from the latest ``contact.upserted`` carrying the key (even null);
   ``lifecycle_stage`` the latest non-null. Merges are applied in order; a merge is skipped when
   its absorbed contact was already absorbed, or when it would create a cycle.
5. Deals: ``created_at`` from the earliest ``deal.created``; account/stage/contact_ids the latest
   non-null; amount+currency from the latest event carrying both; status from the latest of
   closed_won / closed_lost / reopened.
6. FX: per (date, base, quote) the latest event wins; a conversion on day D uses the rate with
   the greatest date <= D over the direct (X->R) and inverse (R->X) pairs, direct winning a tie;
   rounding half-up to the reporting currency's minor unit. No usable rate: unconverted.
7. Costs: converted at ``period_start``'s rate, spread evenly over the inclusive period, the
   first (total mod N) days getting one extra minor unit.
8–11. Journeys, roles, the positional models and time decay, and exact largest-remainder
   credits, as in the contract §2–§3 (a touch is a *middle* touch for a model when it holds none
   of the roles the model weights).
12. Data-driven models (contract §4, tests/support/reference_datadriven.py): ``markov`` and
   ``shapley`` are fitted on the paths of every decided deal with a non-empty journey (won and
   converted: conversion; lost, the journey ending at the loss: null), with a touch's channel
   the final ``channel`` of its campaign, or ``(unknown)`` for a campaign never upserted (a
   channel of its own, credited like any other). Each won, converted deal's amount is split
   by the fit's channel weights as §4 says, then rounded like every other model.

All joins of touches to contacts, accounts, merges, campaigns and rates use the FINAL state after
all events, not the state as of the touch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any

from tests.support import reference_datadriven as dd

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

MODELS: list[str] = [
    "first_touch",
    "last_touch",
    "linear",
    "position_based",
    "u_shaped",
    "w_shaped",
    "full_path",
    "j_shaped",
    "inverse_j",
    "time_decay",
]
DATA_DRIVEN: list[str] = ["markov", "shapley"]
ALL_MODELS: list[str] = MODELS + DATA_DRIVEN
UNKNOWN_CHANNEL = "(unknown)"  # the channel of a touch whose campaign was never upserted

ROLES = ("first", "last", "lead_creation", "opportunity_creation")


def _w(**weights: str) -> dict[str, Fraction]:
    return {role: Fraction(value) for role, value in weights.items()}


POSITIONAL_WEIGHTS: dict[str, dict[str, Fraction]] = {
    "first_touch": _w(first="1"),
    "last_touch": _w(last="1"),
    "linear": _w(middle="1"),
    "position_based": _w(first="0.4", last="0.4", middle="0.2"),
    "u_shaped": _w(first="0.4", lead_creation="0.4", middle="0.2"),
    "w_shaped": _w(first="0.3", lead_creation="0.3", opportunity_creation="0.3", middle="0.1"),
    "full_path": _w(
        first="0.225",
        lead_creation="0.225",
        opportunity_creation="0.225",
        last="0.225",
        middle="0.1",
    ),
    "j_shaped": _w(first="0.2", last="0.6", middle="0.2"),
    "inverse_j": _w(first="0.6", last="0.2", middle="0.2"),
}

# --------------------------------------------------------------------------------------------
# Currencies
# --------------------------------------------------------------------------------------------

_EXPONENT_0 = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "UYI",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
_EXPONENT_3 = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
_EXPONENT_4 = frozenset({"CLF", "UYW"})


def currency_exponent(code: str) -> int:
    """ISO 4217 minor-unit exponent (2 for any currency not listed as 0, 3 or 4)."""
    if code in _EXPONENT_0:
        return 0
    if code in _EXPONENT_3:
        return 3
    if code in _EXPONENT_4:
        return 4
    return 2


def to_minor(amount: str, currency: str) -> int:
    """A decimal string amount as an exact integer of minor units (raises if not exact)."""
    if not isinstance(amount, str):
        raise TypeError(f"amount must be a decimal string, got {amount!r}")
    scaled = Decimal(amount).scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(scaled)


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


def parse_ts(value: str) -> datetime:
    """An RFC 3339 timestamp with offset as an aware UTC datetime."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without offset: {value!r}")
    return parsed.astimezone(UTC)


def parse_date(value: str) -> date:
    return date.fromisoformat(value)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class DealResult:
    deal_id: str
    status: str  # "won" | "lost" | "open"
    closed_at: datetime | None  # aware UTC; set only when won
    currency: str | None
    amount_minor: int | None  # original amount in the deal's own currency
    reporting_minor: int | None  # None: not won, or won but unconverted
    lost_at: datetime | None = None  # aware UTC; set only when lost
    # Touch event_ids in order: up to the win (won deals) or the loss (lost deals, §4).
    journey: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)  # the journey's channels, in order
    credits: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> campaign
    weights: dict[str, dict[str, Fraction]] = field(default_factory=dict)
    touch_credits: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> touch

    @property
    def won(self) -> bool:
        return self.status == "won"

    @property
    def unconverted(self) -> bool:
        """Won, but no usable rate: left out of revenue."""
        return self.status == "won" and self.reporting_minor is None

    @property
    def unattributed_minor(self) -> int:
        """Reporting minor units not credited to any campaign (won+converted, empty journey)."""
        if self.status == "won" and self.reporting_minor is not None and not self.journey:
            return self.reporting_minor
        return 0


@dataclass
class Reference:
    deals: dict[str, DealResult]
    campaigns: dict[str, dict[str, Any]]
    cost_days: dict[tuple[str, date], int]
    # The data-driven fit over every decided deal (contract §4).
    paths: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)
    conversion_probability: Fraction = Fraction(0)
    removal_effects: dict[str, Fraction] = field(default_factory=dict)
    shapley_values: dict[str, Fraction] = field(default_factory=dict)

    def credit_lines(self, models: list[str]) -> dict[tuple[str, str, str], int]:
        """(model, deal, touch event_id) -> credit, for every credited touch of ``models``."""
        return {
            (model, deal_id, touch_id): credit
            for deal_id, deal in self.deals.items()
            for model in models
            for touch_id, credit in deal.touch_credits.get(model, {}).items()
        }


# --------------------------------------------------------------------------------------------
# Internal state
# --------------------------------------------------------------------------------------------


@dataclass
class _Touch:
    event_id: str
    occurred_at: datetime
    campaign_id: str
    contact_id: str | None
    account_id: str | None
    lead_created: bool


@dataclass
class _Deal:
    deal_id: str
    created_at: datetime | None = None
    account_id: str | None = None
    stage: str | None = None
    contact_ids: list[str] | None = None
    amount: str | None = None
    currency: str | None = None
    status: str = "open"
    closed_at: datetime | None = None
    lost_at: datetime | None = None


_UNSET = object()


@dataclass
class _Contact:
    account_id: Any = _UNSET  # _UNSET: never carried by a contact.upserted
    lifecycle_stage: str | None = None


def _sorted_unique(events: list[dict[str, Any]]) -> list[tuple[datetime, dict[str, Any]]]:
    seen: dict[str, dict[str, Any]] = {}
    for event in events:
        seen.setdefault(event["event_id"], event)
    keyed = [(parse_ts(e["occurred_at"]), e) for e in seen.values()]
    keyed.sort(key=lambda pair: (pair[0], pair[1]["event_id"]))
    return keyed


class _Fx:
    """Stored fx rates; per (date, base, quote) the latest event wins."""

    def __init__(self) -> None:
        self.rates: dict[tuple[date, str, str], Decimal] = {}

    def put(self, day: date, base: str, quote: str, rate: str) -> None:
        self.rates[(day, base, quote)] = Decimal(rate)

    def convert(self, amount_minor: int, currency: str, reporting: str, day: date) -> int | None:
        if currency == reporting:
            return amount_minor
        best: tuple[date, int] | None = None
        chosen: tuple[str, Decimal] | None = None
        for (rate_day, base, quote), rate in self.rates.items():
            if rate_day > day or rate <= 0:
                continue
            if base == currency and quote == reporting:
                key, kind = (rate_day, 1), "direct"
            elif base == reporting and quote == currency:
                key, kind = (rate_day, 0), "inverse"
            else:
                continue
            if best is None or key > best:
                best, chosen = key, (kind, rate)
        if chosen is None:
            return None
        kind, rate = chosen
        with localcontext() as ctx:
            ctx.prec = 50
            major = Decimal(amount_minor) / (Decimal(10) ** currency_exponent(currency))
            major = major * rate if kind == "direct" else major / rate
            minor = major * (Decimal(10) ** currency_exponent(reporting))
            return int(minor.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------------------------
# Attribution pieces
# --------------------------------------------------------------------------------------------


def roles_of(journey: list[_Touch], created: datetime) -> list[set[str]]:
    """The roles each touch of a non-empty journey holds."""
    n = len(journey)
    roles: list[set[str]] = [set() for _ in range(n)]
    roles[0].add("first")
    roles[n - 1].add("last")
    lead = next((i for i, t in enumerate(journey) if t.lead_created), 0)
    roles[lead].add("lead_creation")
    opp = 0
    for i, t in enumerate(journey):
        if t.occurred_at <= created:
            opp = i
    roles[opp].add("opportunity_creation")
    return roles


def positional_weights(roles: list[set[str]], model_weights: dict[str, Fraction]) -> list[Fraction]:
    """Normalised weights of a positional model over touches holding ``roles``."""
    weighted_roles = {r for r, w in model_weights.items() if r != "middle" and w > 0}
    raw: list[Fraction] = []
    middles: list[int] = []
    for i, held in enumerate(roles):
        mine = held & weighted_roles
        if mine:
            raw.append(sum((model_weights[r] for r in mine), Fraction(0)))
        else:
            raw.append(Fraction(0))
            middles.append(i)
    middle_weight = model_weights.get("middle", Fraction(0))
    if middles and middle_weight > 0:
        share = middle_weight / len(middles)
        for i in middles:
            raw[i] += share
    return _normalise(raw)


def time_decay_weights(
    journey: list[_Touch], closed_at: datetime, half_life_days: float
) -> list[Fraction]:
    # 2^x as exp(x * ln 2) at 60 digits: a different route from the service's 50-digit power,
    # both far more precise than any cent of any amount needs. When x is a whole number (an
    # age of whole half-lives) 2^x is taken exactly: if every weight of a journey is such a
    # power, two shares can tie exactly, and the contract gives a tie to the earlier touch,
    # which a 60-digit approximation would decide by its rounding instead.
    raw = []
    with localcontext() as ctx:
        ctx.prec = 60
        ln2 = Decimal(2).ln()
        for t in journey:
            age = closed_at - t.occurred_at
            micros = (age.days * 86_400 + age.seconds) * 1_000_000 + age.microseconds
            x = -Fraction(micros, 86_400_000_000) / Fraction(str(half_life_days))
            if x.denominator == 1:
                raw.append(Fraction(2) ** int(x))
            else:
                raw.append(Fraction((Decimal(x.numerator) / Decimal(x.denominator) * ln2).exp()))
    return _normalise(raw)


def _normalise(raw: list[Fraction]) -> list[Fraction]:
    total = sum(raw, Fraction(0))
    if total == 0:  # cannot happen for a non-empty journey; equal split keeps credits whole
        return [Fraction(1, len(raw))] * len(raw)
    return [w / total for w in raw]


def split_minor(amount: int, weights: list[Fraction]) -> list[int]:
    """Largest remainder: floors, then one unit each to the largest fractional parts.

    Ties go to the earlier index. ``weights`` must sum to 1.
    """
    exact = [amount * w for w in weights]
    floors = [math.floor(x) for x in exact]
    left = amount - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


# --------------------------------------------------------------------------------------------
# The computation
# --------------------------------------------------------------------------------------------


def compute(
    events: list[dict[str, Any]],
    *,
    reporting_currency: str = "USD",
    lookback_days: int = 180,
    half_life_days: float = 7.0,
) -> Reference:
    campaigns: dict[str, dict[str, Any]] = {}
    contacts: dict[str, _Contact] = {}
    parent: dict[str, str] = {}
    deals: dict[str, _Deal] = {}
    touches: list[_Touch] = []
    fx = _Fx()
    costs: list[dict[str, Any]] = []

    def root(contact_id: str) -> str:
        while contact_id in parent:
            contact_id = parent[contact_id]
        return contact_id

    for occurred_at, e in _sorted_unique(events):
        kind = e["type"]
        if kind == "campaign.upserted":
            c = campaigns.setdefault(
                e["campaign_id"], {"name": None, "channel": None, "is_sales_sourced": False}
            )
            for key in ("name", "channel", "is_sales_sourced"):
                if key in e:
                    c[key] = e[key]
        elif kind == "campaign.cost":
            costs.append(e)
        elif kind == "contact.upserted":
            ct = contacts.setdefault(e["contact_id"], _Contact())
            if "account_id" in e:
                ct.account_id = e["account_id"]
            if e.get("lifecycle_stage") is not None:
                ct.lifecycle_stage = e["lifecycle_stage"]
        elif kind == "contact.merged":
            survivor, absorbed = e["contact_id"], e["merged_contact_id"]
            if absorbed in parent or root(survivor) == absorbed:
                continue
            parent[absorbed] = survivor
        elif kind == "touch":
            touches.append(
                _Touch(
                    event_id=e["event_id"],
                    occurred_at=occurred_at,
                    campaign_id=e["campaign_id"],
                    contact_id=e.get("contact_id"),
                    account_id=e.get("account_id"),
                    lead_created=bool(e.get("lead_created", False)),
                )
            )
        elif kind.startswith("deal."):
            d = deals.setdefault(e["deal_id"], _Deal(e["deal_id"]))
            if kind == "deal.created" and d.created_at is None:
                d.created_at = occurred_at  # events arrive sorted: the first is the earliest
            for key in ("account_id", "stage", "contact_ids"):
                if e.get(key) is not None:
                    setattr(d, key, e[key])
            if e.get("amount") is not None and e.get("currency") is not None:
                d.amount, d.currency = e["amount"], e["currency"]
            if kind == "deal.closed_won":
                d.status, d.closed_at, d.lost_at = "won", occurred_at, None
            elif kind == "deal.closed_lost":
                d.status, d.closed_at, d.lost_at = "lost", None, occurred_at
            elif kind == "deal.reopened":
                d.status, d.closed_at, d.lost_at = "open", None, None
        elif kind == "fx.rate":
            fx.put(parse_date(e["date"]), e["base"], e["quote"], e["rate"])

    def effective_account(contact_id: str) -> str | None:
        ct = contacts.get(root(contact_id))
        if ct is None or ct.account_id is _UNSET:
            return None
        return ct.account_id  # type: ignore[no-any-return]

    # Costs.
    cost_days: dict[tuple[str, date], int] = {}
    for e in costs:
        start, end = parse_date(e["period_start"]), parse_date(e["period_end"])
        n = (end - start).days + 1
        if n <= 0:
            continue
        total = fx.convert(
            to_minor(e["amount"], e["currency"]), e["currency"], reporting_currency, start
        )
        if total is None:
            continue
        base, extra = divmod(total, n)
        for i in range(n):
            day_key = (e["campaign_id"], start + timedelta(days=i))
            cost_days[day_key] = cost_days.get(day_key, 0) + base + (1 if i < extra else 0)

    # Deals: their journeys, the positional models and time decay; then the data-driven fit
    # over every decided deal, and its per-deal credits.
    touches.sort(key=lambda t: (t.occurred_at, t.event_id))
    journeys = _Journeys(touches, root, effective_account, timedelta(days=lookback_days))

    def channel_of(t: _Touch) -> str:
        return campaigns.get(t.campaign_id, {}).get("channel") or UNKNOWN_CHANNEL

    results: dict[str, DealResult] = {}
    paths: list[tuple[tuple[str, ...], bool]] = []
    credited: list[tuple[DealResult, list[_Touch], int]] = []
    for deal_id, d in deals.items():
        amount_minor = (
            to_minor(d.amount, d.currency)
            if d.amount is not None and d.currency is not None
            else None
        )
        result = DealResult(
            deal_id=deal_id,
            status=d.status,
            closed_at=d.closed_at,
            currency=d.currency,
            amount_minor=amount_minor,
            reporting_minor=None,
            lost_at=d.lost_at,
        )
        results[deal_id] = result
        end = d.closed_at if d.status == "won" else d.lost_at
        if end is None:  # open
            continue
        created = d.created_at if d.created_at is not None else end
        journey = journeys.of(d, created, end)
        result.journey = [t.event_id for t in journey]
        result.channels = [channel_of(t) for t in journey]
        if d.status == "lost":
            if journey:
                paths.append((tuple(result.channels), False))
            continue

        if amount_minor is None or d.currency is None:
            continue
        converted = fx.convert(amount_minor, d.currency, reporting_currency, end.date())
        result.reporting_minor = converted
        if converted is None or not journey:
            continue
        paths.append((tuple(result.channels), True))
        credited.append((result, journey, converted))
        roles = roles_of(journey, created)
        for model in MODELS:
            if model == "time_decay":
                weights = time_decay_weights(journey, end, half_life_days)
            else:
                weights = positional_weights(roles, POSITIONAL_WEIGHTS[model])
            _credit(result, model, journey, converted, weights)

    base, effects = dd.markov_removal_effects(paths)
    shapley = dd.shapley_values(paths)
    for result, journey, converted in credited:
        for model, table in (("markov", effects), ("shapley", shapley)):
            weights = dd.channel_weights(result.channels, table)
            _credit(result, model, journey, converted, weights)

    return Reference(
        deals=results,
        campaigns=campaigns,
        cost_days=cost_days,
        paths=paths,
        conversion_probability=base,
        removal_effects=effects,
        shapley_values=shapley,
    )


def _credit(
    result: DealResult, model: str, journey: list[_Touch], amount: int, weights: list[Fraction]
) -> None:
    """Record one model's credits of a deal: per touch, and summed per campaign."""
    credits = split_minor(amount, weights)
    by_campaign: dict[str, int] = {}
    weight_by_campaign: dict[str, Fraction] = {}
    for t, credit, w in zip(journey, credits, weights, strict=True):
        by_campaign[t.campaign_id] = by_campaign.get(t.campaign_id, 0) + credit
        weight_by_campaign[t.campaign_id] = weight_by_campaign.get(t.campaign_id, Fraction(0)) + w
    result.credits[model] = by_campaign
    result.weights[model] = weight_by_campaign
    result.touch_credits[model] = {t.event_id: c for t, c in zip(journey, credits, strict=True)}


class _Journeys:
    """Touches indexed by what ties them to a deal (§2), so a journey reads only candidates.

    A touch belongs to deal D (account A) when its own ``account_id`` is A, or its contact
    (after merges) belongs to A by its latest ``contact.upserted``, or its contact's merge
    root is (the root of) one of D's ``contact_ids``.
    """

    def __init__(
        self,
        touches: list[_Touch],
        root: Callable[[str], str],
        account_of: Callable[[str], str | None],
        lookback: timedelta,
    ) -> None:
        self.root, self.lookback = root, lookback
        self.by_account: dict[str, list[_Touch]] = {}
        self.by_contact_account: dict[str, list[_Touch]] = {}
        self.by_root: dict[str, list[_Touch]] = {}
        for t in touches:
            if t.account_id is not None:
                self.by_account.setdefault(t.account_id, []).append(t)
            if t.contact_id is not None:
                self.by_root.setdefault(root(t.contact_id), []).append(t)
                account = account_of(t.contact_id)
                if account is not None:
                    self.by_contact_account.setdefault(account, []).append(t)

    def of(self, deal: _Deal, created: datetime, end: datetime) -> list[_Touch]:
        """The deal's journey ending at ``end``: in the window, ordered, each touch once."""
        candidates: dict[str, _Touch] = {}
        if deal.account_id is not None:
            for t in self.by_account.get(deal.account_id, []):
                candidates[t.event_id] = t
            for t in self.by_contact_account.get(deal.account_id, []):
                candidates[t.event_id] = t
        contacts = set(deal.contact_ids or [])
        for contact_root in {self.root(c) for c in contacts} | contacts:
            for t in self.by_root.get(contact_root, []):
                candidates[t.event_id] = t
        journey = [
            t for t in candidates.values() if created - self.lookback <= t.occurred_at <= end
        ]
        return sorted(journey, key=lambda t: (t.occurred_at, t.event_id))
