"""Backtest of lead definitions (contract §7): what a rule would have caught, point in time.

``GET /v1/lead-definitions/{id}/backtest?from=&to=[&version=][&compare=other[@n]]`` evaluates a
definition's version (default: the latest), and optionally a second one, on the same deals:
the deals with an account won (by ``closed_at``) or lost (by ``lost_at``) in ``[from, to)``.

Point in time, by walk-forward refit (not the stored snapshots, which were fitted later on
more data): for a deal created at C in UTC month M, the Markov chain and the grade are fitted
afresh on the deals decided before the first instant of M — the worker's fits restricted to
the past: their journeys as contract §2 builds them (``collect_paths``) and their accounts'
attributes as of that instant, recovered from the stored ``account.upserted`` and
``contact.upserted`` events (latest value per key before it). One refit per month, made once
per request. A Markov fit needs a won and a lost non-empty journey, a grade fit a won and a
lost deal with an account; a month without one has no score (or grade), so a condition on it
fails for that month's deals. ``fits`` lists each month's training deals and what was fitted.

The account qualified for the deal at the first moment in the deal's window ``[C - lookback,
C)`` at which its journey so far, its attributes and the month's fits meet the rule
(``services.domain.backtest``: the moments are its touches and attribute changes, evaluated
only with a touch in the journey's lookback window). A deal whose account met the rule only
at or after C is not caught.

Not point in time: deals' statuses, amounts and decision times, campaigns' channels and which
account (and root contact) a contact belongs to are read as they are now.

Per definition: decided and won deals and the base win rate; the qualified (caught) deals, how
many were won, their win rate and its lift over the base rate; the distinct accounts caught;
won revenue and the caught share of it and of the won deals; the won deals missed (the first
``missed_limit`` by ``closed_at``, each with why its account did not meet the rule just before
creation; ``missed_total`` counts all); and the median days from qualifying to won over the
caught won deals (exact, rounded half-up to 2 decimals).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from sqlalchemy.orm import Session

from services.api.backtest_data import (
    DecidedDeal,
    TrainingDeal,
    account_touches,
    attribute_changes,
    decided_before,
    decided_in,
    definition_rule,
)
from services.api.backtest_schemas import (
    BacktestDefinitionOut,
    BacktestFitOut,
    BacktestMissedOut,
    BacktestOut,
)
from services.api.errors import InvalidQuery, LeadDefinitionNotFound
from services.api.formatting import ratio, rfc3339
from services.api.funnel import median
from services.api.lead_definitions import DEFINITION_ID
from services.api.lead_schemas import LeadRuleOut
from services.api.params import Period
from services.core.db.decided import collect_paths
from services.core.money import format_minor
from services.core.settings import Settings
from services.domain.backtest import (
    AccountHistory,
    Change,
    DealOutcome,
    Fits,
    account_history,
    attributes_at,
    qualified_at,
    reasons_before,
    tally,
)
from services.domain.grade import GradeFitError, GradeSample, fit_grade
from services.domain.leads import LeadRule
from services.domain.markov import fit_markov

MISSED_LIMIT = 100


def parse_compare(text: str | None) -> tuple[str, int | None] | None:
    """Parse ``compare=other`` or ``other@3``; empty or absent is None."""
    if text is None or text == "":
        return None
    definition_id, at, version = text.rpartition("@") if "@" in text else (text, "", "")
    if not DEFINITION_ID.fullmatch(definition_id):
        raise InvalidQuery(
            "query.compare",
            f"{text!r} is not a definition id, optionally followed by @version",
            kind="string_pattern_mismatch",
        )
    if not at:
        return definition_id, None
    if not version.isascii() or not version.isdigit() or not 1 <= int(version) < 2**31:
        raise InvalidQuery("query.compare", f"{version!r} is not a version (a whole number from 1)")
    return definition_id, int(version)


def month_start(moment: datetime) -> datetime:
    """Return the first instant of ``moment``'s UTC month."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Month:
    fits: Fits
    out: BacktestFitOut


def _fit_month(
    session: Session,
    settings: Settings,
    cut: datetime,
    training: Sequence[TrainingDeal],
    changes: Mapping[str, Sequence[Change]],
) -> _Month:
    """Refit the Markov chain and the grade on the deals decided before ``cut``."""
    known = [t for t in training if t.decided_at < cut]
    paths, _ = collect_paths(session, settings, decided_before=cut)
    converted = {p.converted for p in paths}
    markov = fit_markov(paths, order=settings.markov_order) if len(converted) == 2 else None
    samples = [
        GradeSample(
            attributes_at(changes.get(t.account_id, ()), cut, inclusive=False).features(), t.won
        )
        for t in known
        if t.account_id is not None
    ]
    try:
        grade_fit = fit_grade(samples, prior_strength=Fraction(str(settings.grade_prior_strength)))
    except GradeFitError:
        grade_fit = None
    return _Month(
        Fits(markov, grade_fit),
        BacktestFitOut(
            month=cut.strftime("%Y-%m"),
            decided_before=rfc3339(cut) or "",
            training_deals=len(known),
            won=sum(t.won for t in known),
            markov=markov is not None,
            grade=grade_fit is not None,
        ),
    )


@dataclass(frozen=True)
class _Evaluation:
    """What every definition is evaluated on: the deals, their accounts and the monthly fits."""

    deals: list[DecidedDeal]
    histories: dict[str, AccountHistory]
    months: dict[datetime, _Month]
    lookback: timedelta
    currency: str


def _prepare(session: Session, settings: Settings, period: Period) -> _Evaluation:
    deals = decided_in(session, period)
    cuts = sorted({month_start(d.created_at) for d in deals})
    training = decided_before(session, cuts[-1]) if cuts else []
    accounts = {d.account_id for d in deals}
    changes = attribute_changes(
        session, accounts | {t.account_id for t in training if t.account_id is not None}
    )
    touches = (
        account_touches(session, accounts, before=max(d.created_at for d in deals)) if deals else {}
    )
    return _Evaluation(
        deals=deals,
        histories={a: account_history(touches.get(a, ()), changes.get(a, ())) for a in accounts},
        months={cut: _fit_month(session, settings, cut, training, changes) for cut in cuts},
        lookback=timedelta(days=settings.lookback_days),
        currency=settings.reporting_currency,
    )


def _money(amount_minor: int | None, currency: str) -> str | None:
    return None if amount_minor is None else format_minor(amount_minor, currency)


def _evaluate(
    ev: _Evaluation, definition_id: str, version: int, rule: LeadRule, *, missed_limit: int
) -> BacktestDefinitionOut:
    def fits(deal: DealOutcome | DecidedDeal) -> Fits:
        return ev.months[month_start(deal.created_at)].fits

    outcomes = [
        DealOutcome(
            d.deal_id,
            d.account_id,
            d.won,
            d.revenue_minor,
            d.created_at,
            d.closed_at,
            qualified_at(
                rule,
                fits(d),
                ev.histories[d.account_id],
                created_at=d.created_at,
                lookback=ev.lookback,
            ),
        )
        for d in ev.deals
    ]
    t = tally(outcomes)
    missed = [
        BacktestMissedOut(
            deal_id=o.deal_id,
            account_id=o.account_id,
            amount=_money(o.revenue_minor, ev.currency),
            created_at=rfc3339(o.created_at) or "",
            closed_at=rfc3339(o.closed_at) or "",
            reasons=reasons_before(
                rule,
                fits(o),
                ev.histories[o.account_id],
                created_at=o.created_at,
                lookback=ev.lookback,
            ),
        )
        for o in t.missed[:missed_limit]
    ]
    return BacktestDefinitionOut(
        id=definition_id,
        version=version,
        rule=LeadRuleOut.of(rule),
        decided_deals=t.decided,
        won_deals=t.won,
        base_win_rate=ratio(t.won, t.decided),
        qualified_deals=t.qualified,
        qualified_won=t.qualified_won,
        qualified_win_rate=ratio(t.qualified_won, t.qualified),
        lift=ratio(t.qualified_won * t.decided, t.qualified * t.won),
        qualified_accounts=t.qualified_accounts,
        won_revenue=format_minor(t.won_revenue, ev.currency),
        caught_won_revenue=format_minor(t.caught_revenue, ev.currency),
        share_of_won_revenue=ratio(t.caught_revenue, t.won_revenue),
        share_of_won_deals=ratio(t.qualified_won, t.won),
        median_days_to_won=median(t.days_to_won),
        missed_total=len(t.missed),
        missed=missed,
    )


def backtest_report(
    session: Session,
    settings: Settings,
    *,
    definition_id: str,
    version: int | None,
    compare: tuple[str, int | None] | None,
    period: Period,
    missed_limit: int = MISSED_LIMIT,
) -> BacktestOut:
    """Backtest a definition (and the one to compare) on the deals decided in ``period``."""
    if not DEFINITION_ID.fullmatch(definition_id):
        raise LeadDefinitionNotFound(definition_id)
    chosen: Iterable[tuple[str, int | None]] = [(definition_id, version)]
    if compare is not None:
        chosen = [*chosen, compare]
    rules = [(d, *definition_rule(session, d, v)) for d, v in chosen]
    ev = _prepare(session, settings, period)
    start, end = period.echo()
    return BacktestOut(
        from_=start,
        to=end,
        currency=ev.currency,
        lookback_days=settings.lookback_days,
        unconverted_won_deals=sum(1 for d in ev.deals if d.won and d.revenue_minor is None),
        definitions=[_evaluate(ev, d, v, rule, missed_limit=missed_limit) for d, v, rule in rules],
        fits=[month.out for _, month in sorted(ev.months.items())],
    )
