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
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Subquery, exists, or_, select, union
from sqlalchemy.orm import Session

from services.api import queries, snapshots
from services.api.errors import AccountNotFound, NoFit
from services.api.formatting import rfc3339
from services.api.schemas import AccountScoreOut, LeadOut, LeadsOut, ScoreTouchOut
from services.core.db.schema import CampaignRow, ContactRow, DealRow, ModelFitRow, TouchRow
from services.domain import UNKNOWN_CHANNEL
from services.domain.datadriven import markov_from_json
from services.domain.markov import (
    MarkovFit,
    conversion_probability,
    journey_state,
    score_contributions,
    state_label,
)


@dataclass(frozen=True)
class _Touch:
    event_id: str
    occurred_at: datetime
    campaign_id: str
    channel: str | None


class Scorer:
    """A rebuilt Markov snapshot with a memo of scores per channel sequence."""

    def __init__(self, row: ModelFitRow) -> None:
        self.row = row
        self.fit: MarkovFit = markov_from_json(json.loads(row.results))
        self._memo: dict[tuple[str, ...], tuple[float, str]] = {}

    def score(self, channels: Sequence[str]) -> tuple[float, str]:
        """Return the journey's conversion probability and its current state's label."""
        key = tuple(channels)
        hit = self._memo.get(key)
        if hit is None:
            hit = (
                conversion_probability(self.fit, key),
                state_label(journey_state(self.fit, key)),
            )
            self._memo[key] = hit
        return hit


def load_scorer(session: Session) -> Scorer:
    """Return a scorer over the latest done markov fit, or raise NoFit."""
    row = snapshots.latest_done(session, "markov")
    if row is None:
        raise NoFit("markov")
    return Scorer(row)


def _members(conditions: Sequence[ColumnElement[bool]], account_id: str | None) -> Subquery:
    """Select (account_id, event_id) of touches under ``conditions``, by either membership."""
    own = select(TouchRow.account_id.label("account_id"), TouchRow.event_id).where(
        TouchRow.account_id.is_not(None), *conditions
    )
    via = (
        select(ContactRow.effective_account_id.label("account_id"), TouchRow.event_id)
        .join(ContactRow, ContactRow.contact_id == TouchRow.contact_id)
        .where(ContactRow.effective_account_id.is_not(None), *conditions)
    )
    if account_id is not None:
        own = own.where(TouchRow.account_id == account_id)
        via = via.where(ContactRow.effective_account_id == account_id)
    return union(own, via).subquery("members")


def _journeys(
    session: Session, *, now: datetime, lookback_days: int, account_id: str | None = None
) -> dict[str, list[_Touch]]:
    """Return each account's touches in the window, in journey order.

    With ``account_id``, that account only; without, every account with no won deal.
    """
    window = [
        TouchRow.occurred_at >= now - timedelta(days=lookback_days),
        TouchRow.occurred_at <= now,
    ]
    members = _members(window, account_id)
    stmt = (
        select(
            members.c.account_id,
            TouchRow.event_id,
            TouchRow.occurred_at,
            TouchRow.campaign_id,
            CampaignRow.channel,
        )
        .join(TouchRow, TouchRow.event_id == members.c.event_id)
        .outerjoin(CampaignRow, CampaignRow.campaign_id == TouchRow.campaign_id)
    )
    if account_id is None:
        stmt = stmt.where(
            ~exists().where(
                DealRow.account_id == members.c.account_id, DealRow.status == queries.WON
            )
        )
    out: dict[str, list[_Touch]] = defaultdict(list)
    for account, event_id, occurred_at, campaign_id, channel in session.execute(stmt):
        out[account].append(_Touch(event_id, occurred_at, campaign_id, channel))
    for touches in out.values():
        # Journey order (contract §2), by code point: no database collation involved.
        touches.sort(key=lambda t: (t.occurred_at, t.event_id))
    return out


def _channels(touches: Sequence[_Touch]) -> list[str]:
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
    scorer = load_scorer(session)
    touches = _journeys(session, now=now, lookback_days=lookback_days, account_id=account_id).get(
        account_id, []
    )
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
        snapshot=snapshots.ref(scorer.row),
        contributions=score_contributions(scorer.fit, channels),
    )


def leads(
    session: Session,
    *,
    now: datetime,
    lookback_days: int,
    min_score: float,
    limit: int,
) -> LeadsOut:
    """Rank the open accounts (touched in the window, no won deal) by lead score."""
    scorer = load_scorer(session)
    rows: list[LeadOut] = []
    for account_id, touches in _journeys(session, now=now, lookback_days=lookback_days).items():
        probability, state = scorer.score(_channels(touches))
        if probability >= min_score:
            rows.append(
                LeadOut(
                    account_id=account_id,
                    probability=probability,
                    touches=len(touches),
                    last_touch_at=rfc3339(touches[-1].occurred_at),
                    state=state,
                )
            )
    rows.sort(key=lambda r: (-r.probability, r.account_id))
    return LeadsOut(
        as_of=rfc3339(now) or "",
        min_score=min_score,
        limit=limit,
        snapshot=snapshots.ref(scorer.row),
        rows=rows[:limit],
    )
