"""Fit the grade (contract §7) and keep it versioned like the data-driven models' fits.

A grade fit learns from every decided deal (won and converted, or lost) that has an account:
one sample per deal, the account's current attributes and its contacts' (``account_features``),
won or not. It is stored as a ``model_fits`` row of model ``grade`` with its inputs and the
fitted table, ``done`` at once (no credits depend on it). It is due when no grade fit exists
yet and decided deals exist, and on the data-driven schedule when the latest one is older than
``fit_interval_s`` and more decided deals exist than it learned from. A fit that cannot be made
(no won or no lost deal yet) is stored ``failed`` with the reason and retried on the schedule.
Two workers fitting at once store two snapshots of the same data; the latest one is read.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from fractions import Fraction

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.core.db.accounts import account_attributes
from services.core.db.decided import decided_deal_count
from services.core.db.schema import DealRow, ModelFitRow
from services.core.settings import Settings
from services.domain.grade import (
    GradeFitError,
    GradeSample,
    account_features,
    fit_grade,
    grade_fit_to_json,
)
from services.domain.state import STATUS_LOST, STATUS_WON

log = logging.getLogger("closedloop.grading")
GRADE_MODEL = "grade"


def grade_samples(session: Session) -> list[GradeSample]:
    """Return one sample per decided deal with an account, in deal id order."""
    deals = list(
        session.execute(
            select(DealRow.account_id, DealRow.status)
            .where(
                DealRow.account_id.is_not(None),
                ((DealRow.status == STATUS_WON) & (DealRow.conversion == "converted"))
                | (DealRow.status == STATUS_LOST),
            )
            .order_by(DealRow.deal_id)
        )
    )
    attributes = account_attributes(session, {str(account) for account, _ in deals})
    samples = []
    for account, status in deals:
        held = attributes[str(account)]
        features = account_features(held.own, held.contacts.values())
        samples.append(GradeSample(features=features, won=status == STATUS_WON))
    return samples


def grade_due(session: Session, settings: Settings, *, now: datetime, schedule: bool) -> bool:
    """Return whether a grade fit is due (the first as soon as decided deals exist)."""
    latest = session.scalars(
        select(ModelFitRow)
        .where(ModelFitRow.model_id == GRADE_MODEL)
        .order_by(ModelFitRow.id.desc())
        .limit(1)
    ).first()
    if latest is not None and not schedule:
        return False
    decided = decided_deal_count(session)
    if decided == 0:
        return False
    if latest is None:
        return True
    fitted_with = orjson.loads(latest.inputs).get("decided_deals", 0)
    old = now - latest.requested_at >= timedelta(seconds=settings.fit_interval_s)
    return old and decided > fitted_with


def fit_grade_snapshot(session: Session, settings: Settings, *, now: datetime) -> ModelFitRow:
    """Fit the grade on the decided deals and store the snapshot (done, or failed)."""
    samples = grade_samples(session)
    inputs = {
        "decided_deals": decided_deal_count(session),
        "samples": len(samples),
        "won": sum(s.won for s in samples),
    }
    strength = Fraction(str(settings.grade_prior_strength))
    row = ModelFitRow(
        model_id=GRADE_MODEL,
        requested_at=now,
        params=orjson.dumps({"prior_strength": str(strength)}).decode(),
        inputs=orjson.dumps(inputs).decode(),
    )
    try:
        fit = fit_grade(samples, prior_strength=strength)
    except GradeFitError as exc:
        row.status, row.error = "failed", str(exc)
    else:
        row.status, row.fitted_at = "done", now
        row.results = orjson.dumps(grade_fit_to_json(fit)).decode()
        log.info("fitted the grade on %s decided deals", len(samples))
    session.add(row)
    session.flush()
    return row
