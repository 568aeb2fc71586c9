"""``/v1/accounts/{account_id}/score`` and ``/grade``: one account's lead score and grade."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from services.api.deps import ReadPrincipal, SessionDep, SettingsDep
from services.api.grading import account_grade
from services.api.schemas import AccountGradeOut, AccountScoreOut
from services.api.scoring import account_score

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@router.get(
    "/{account_id}/score",
    responses={
        404: {"description": "no touch was ever seen for this account"},
        409: {"description": "the markov model has no fit yet"},
    },
)
def score(
    account_id: str, _: ReadPrincipal, session: SessionDep, settings: SettingsDep
) -> AccountScoreOut:
    """The probability that the account's journey so far ends in a won deal, and why.

    The journey is the account's touches of the last ``lookback_days`` (its own and its
    contacts'); the probability is the absorption probability into conversion, from the
    journey's current state, of the latest markov snapshot's chain; ``contributions`` split
    it over the journey's channels by removal effect. See ``services.api.scoring``.
    """
    return account_score(
        session, account_id, now=datetime.now(UTC), lookback_days=settings.lookback_days
    )


@router.get(
    "/{account_id}/grade",
    responses={
        404: {"description": "no event ever named this account"},
        409: {"description": "the grade has no fit yet"},
    },
)
def grade(account_id: str, _: ReadPrincipal, session: SessionDep) -> AccountGradeOut:
    """How closely the account's attributes (and its contacts') match the accounts that won.

    Each attribute value contributes the log-odds of its smoothed win rate against the base
    rate, from the latest grade snapshot (0 for a value the fit never saw, listed with
    ``seen`` false); ``raw`` is their sum and the letter comes from the snapshot's cut-offs
    (A: top quarter of decided deals' accounts). See ``services.domain.grade``.
    """
    return account_grade(session, account_id)
