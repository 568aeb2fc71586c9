"""The closed-loop lead score: how likely an open journey is to end in a won deal.

How the score is computed:
- The journey of an account "so far" is every touch whose own ``account_id`` is the account,
  or whose contact's ``effective_account_id`` (its account after merges, from ``contacts``)
  is the account, that occurred in ``[now - lookback_days, now]``, ordered by
  (``occurred_at``, ``event_id``) — contract §2's journey of an open deal, ending now.
- Each touch's channel is its campaign's. A touch of a campaign with no ``campaign.upserted``
  yet is shown with a null channel and scored as channel ``(unknown)``, the name the worker
  gives such touches when it builds the fitted paths, so both sides read it alike.
- The model is the latest done ``markov`` snapshot (the absorbing chain fitted on the won and
  lost journeys of contract §4), rebuilt once per request with ``markov_from_json``.
- The journey's channels are mapped to the chain's current state (``journey_state``):
  channels the fit never saw are skipped; repeats collapse as in the fit; at order k the
  state is the last k-tuple, backing off to its longest suffix the fit has seen, else
  ``(start)``. The score is that state's absorption probability into conversion
  (``conversion_probability``): the chance, by the fitted transition probabilities, that a
  journey standing there ends in a won deal rather than a lost one. An empty journey scores
  the chain's overall conversion probability (its ``(start)`` state).
- ``contributions`` split the score over the journey's channels by removal effect, then
  evenly over each channel's touches (``score_contributions``, the same rule as the deal
  split of contract §4), so they add up to the score.
- Leads are the accounts with at least one touch in the window and no won deal
  (``deals.status = 'won'`` for the account), ranked by score descending, then account id.
  The candidates and their touches are selected in SQL; the scoring is done in Python, once
  per distinct channel sequence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from services.api import snapshots
from services.api.errors import AccountNotFound, NoFit
from services.api.formatting import rfc3339
from services.api.grading import grade_of, load_grade_fit
from services.api.schemas import AccountScoreOut, LeadOut, LeadsOut, ScoreTouchOut
from services.core.db.accounts import OpenTouch, account_attributes, open_journeys
from services.core.db.schema import ContactRow, ModelFitRow, TouchRow
from services.domain import UNKNOWN_CHANNEL
from services.domain.grade import letter_at_least
from services.domain.markov import score_contributions
from services.domain.scoring import Scorer


def load_scorer(session: Session) -> tuple[ModelFitRow, Scorer]:
    """Return the latest done markov fit and a scorer over it, or raise NoFit."""
    row = snapshots.latest_done(session, "markov")
    if row is None:
        raise NoFit("markov")
    return row, Scorer(json.loads(row.results))


def _channels(touches: Sequence[OpenTouch]) -> list[str]:
    return [t.channel or UNKNOWN_CHANNEL for t in touches]


def _known_account(session: Session, account_id: str) -> bool:
    """Whether any touch, at any time, belongs to the account."""
    contacts = select(ContactRow.contact_id).where(ContactRow.effective_account_id == account_id)
    found = session.scalar(
        select(TouchRow.event_id)
        .where(or_(TouchRow.account_id == account_id, TouchRow.contact_id.in_(contacts)))
        .limit(1)
    )
    return found is not None


def account_score(
    session: Session, account_id: str, *, now: datetime, lookback_days: int
) -> AccountScoreOut:
    """Score one account's journey so far (see the module docstring)."""
    if "\x00" in account_id or not _known_account(session, account_id):
        raise AccountNotFound(account_id)
    fit_row, scorer = load_scorer(session)
    touches = open_journeys(
        session, now=now, lookback_days=lookback_days, account_id=account_id
    ).get(account_id, [])
    channels = _channels(touches)
    probability, state = scorer.score(channels)
    return AccountScoreOut(
        account_id=account_id,
        as_of=rfc3339(now) or "",
        probability=probability,
        state=state,
        journey=[
            ScoreTouchOut(
                event_id=t.event_id,
                occurred_at=rfc3339(t.occurred_at),
                campaign_id=t.campaign_id,
                channel=t.channel,
            )
            for t in touches
        ],
        snapshot=snapshots.ref(fit_row),
        contributions=score_contributions(scorer.fit, channels),
    )


def leads(
    session: Session,
    *,
    now: datetime,
    lookback_days: int,
    min_score: float,
    min_grade: str | None,
    sort: str,
    limit: int,
) -> LeadsOut:
    """Rank the open accounts (touched in the window, no won deal) by score or by grade."""
    fit_row, scorer = load_scorer(session)
    graded = load_grade_fit(session)
    journeys = open_journeys(session, now=now, lookback_days=lookback_days)
    attributes = account_attributes(session, journeys) if graded is not None else {}
    rows: list[LeadOut] = []
    for account_id, touches in journeys.items():
        probability, state = scorer.score(_channels(touches))
        result = None if graded is None else grade_of(graded[1], attributes[account_id])
        if probability < min_score or (
            min_grade is not None
            and (result is None or not letter_at_least(result.letter, min_grade))
        ):
            continue
        rows.append(
            LeadOut(
                account_id=account_id,
                probability=probability,
                grade=None if result is None else result.letter,
                raw_grade=None if result is None else result.raw,
                touches=len(touches),
                last_touch_at=rfc3339(touches[-1].occurred_at),
                state=state,
            )
        )
    rows.sort(key=by_grade if sort == "grade" else by_score)
    return LeadsOut(
        as_of=rfc3339(now) or "",
        min_score=min_score,
        min_grade=min_grade,
        sort=sort,
        limit=limit,
        snapshot=snapshots.ref(fit_row),
        grade_snapshot=None if graded is None else snapshots.ref(graded[0]),
        rows=rows[:limit],
    )


def by_score(r: LeadOut) -> tuple[float, float, str]:
    return (-r.probability, -(r.raw_grade or 0.0), r.account_id)


def by_grade(r: LeadOut) -> tuple[float, float, str]:
    return (-(r.raw_grade or 0.0), -r.probability, r.account_id)
