"""The grade of one account (contract §7), read off the latest grade snapshot.

The account's features are its current attributes and its contacts' (after merges, under keys
prefixed ``contact.``; ``services.core.db.accounts``), graded by ``services.domain.grade``: each
(key, value) contributes its fitted log-odds, 0 when the fit never saw it (listed as unseen),
and the letter comes from the snapshot's cut-offs.
"""

from __future__ import annotations

import json

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from services.api import snapshots
from services.api.errors import AccountNotFound, NoFit
from services.api.schemas import AccountGradeOut, GradeContributionOut
from services.core.db.accounts import AccountAttributes, account_attributes
from services.core.db.schema import AccountRow, ContactRow, DealRow, ModelFitRow, TouchRow
from services.domain.grade import Grade, GradeFit, account_features, grade, grade_fit_from_json

GRADE_MODEL = "grade"


def load_grade_fit(session: Session) -> tuple[ModelFitRow, GradeFit] | None:
    """Return the latest done grade snapshot and its fit, or None."""
    row = snapshots.latest_done(session, GRADE_MODEL)
    return None if row is None else (row, grade_fit_from_json(json.loads(row.results)))


def grade_of(fit: GradeFit, attributes: AccountAttributes) -> Grade:
    """Grade an account's attributes and its contacts' under ``fit``."""
    return grade(fit, account_features(attributes.own, attributes.contacts.values()))


def _known(session: Session, account_id: str) -> bool:
    """Whether the account was ever named: upserted, on a deal, a contact or a touch."""
    probes = (
        select(AccountRow.account_id).where(AccountRow.account_id == account_id),
        select(DealRow.deal_id).where(DealRow.account_id == account_id),
        select(ContactRow.contact_id).where(
            or_(ContactRow.account_id == account_id, ContactRow.effective_account_id == account_id)
        ),
        select(TouchRow.event_id).where(TouchRow.account_id == account_id),
    )
    return any(session.scalar(probe.limit(1)) is not None for probe in probes)


def account_grade(session: Session, account_id: str) -> AccountGradeOut:
    """Grade one account with the latest snapshot (see the module docstring)."""
    if "\x00" in account_id or not _known(session, account_id):
        raise AccountNotFound(account_id, why="no event has named")
    loaded = load_grade_fit(session)
    if loaded is None:
        raise NoFit(GRADE_MODEL)
    row, fit = loaded
    result = grade_of(fit, account_attributes(session, [account_id])[account_id])
    return AccountGradeOut(
        account_id=account_id,
        letter=result.letter,
        raw=result.raw,
        cutoffs=dict(fit.cutoffs),
        base_rate=float(fit.base_rate),
        snapshot=snapshots.ref(row),
        contributions=[
            GradeContributionOut(
                key=c.key,
                value=c.value,
                contribution=c.contribution,
                seen=c.seen,
                deals=c.deals,
                won=c.won,
            )
            for c in result.contributions
        ],
    )
