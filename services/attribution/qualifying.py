"""Qualify open accounts against the active lead definition and emit their MQLs (contract §7).

How a pass works (``qualify_accounts``, one transaction): the candidates are the open accounts
(touched in the lookback window, no won deal: the leads report's accounts). Each is scored
(latest Markov snapshot), graded (latest grade snapshot) and checked against the active
definition's latest version (``services.domain.leads.meets``). An account that meets it and has
no open qualification episode under that definition opens the next episode (``qualified_at`` =
the pass's clock); one that no longer meets it (or is no longer a candidate) closes its open
episode. Opening an episode writes, for each of the account's contacts (roots, after merges)
whose lifecycle stage is not sales-ready under the rule and not ``disqualified``, an ``mqls``
row holding a canonical ``contact.upserted`` to ``mql`` (source ``closedloop``).

Exactly once: the event id is derived from (definition, account, episode, contact), and the
episode and its rows are written in one transaction with insert-if-absent, so a pass repeated
after a crash writes one row per contact per episode. Two passes must not overlap: one that
read the open episodes before the other committed, and the last episode numbers after, would
open the next episode, with new event ids, for the same qualification. The worker runs a pass
only under the qualification try-lock (``maintenance.maintain_leads``), which makes them one at
a time (tests/integration/test_mql_concurrency.py races two workers' passes). The rows
are the outbox: ``publish_mqls`` sends those not yet acknowledged to the events topic, then
marks them; a crash in between re-sends the same event (same id, same content), which the store
counts as a duplicate. The worker consumes them like any CRM change, so the funnel and the SLA
see the MQL.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from services.core.db.accounts import AccountAttributes, account_attributes, open_journeys
from services.core.db.schema import (
    ContactRow,
    LeadDefinitionRow,
    LeadQualificationRow,
    ModelFitRow,
    MqlRow,
    SystemStateRow,
)
from services.core.db.upsert import among, insert_ignore
from services.core.events import EVENT_ADAPTER, decode, encode, partition_key
from services.core.settings import Settings
from services.domain import UNKNOWN_CHANNEL
from services.domain.grade import account_features, grade, grade_fit_from_json
from services.domain.leads import LeadRule, is_sales_ready, meets, present_keys, rule_from_json
from services.domain.scoring import Scorer

log = logging.getLogger("closedloop.leads")
ACTIVE_DEFINITION = "active_lead_definition"  # system_state key: the active definition's id
MQL_SOURCE = "closedloop"


@dataclass(frozen=True)
class Definition:
    """The active definition's id, its latest version and that version's rule."""

    definition_id: str
    version: int
    rule: LeadRule


def active_definition(session: Session) -> Definition | None:
    """Return the active lead definition's latest version, or None."""
    state = session.get(SystemStateRow, ACTIVE_DEFINITION)
    if state is None or not state.value:
        return None
    row = session.scalars(
        select(LeadDefinitionRow)
        .where(LeadDefinitionRow.definition_id == state.value)
        .order_by(LeadDefinitionRow.version.desc())
        .limit(1)
    ).first()
    return (
        None
        if row is None
        else Definition(row.definition_id, row.version, rule_from_json(row.rule))
    )


def _latest_results(session: Session, model_id: str) -> dict[str, object] | None:
    results = session.scalars(
        select(ModelFitRow.results)
        .where(ModelFitRow.model_id == model_id, ModelFitRow.status == "done")
        .order_by(ModelFitRow.id.desc())
        .limit(1)
    ).first()
    return None if results is None else dict(json.loads(results))


def mql_event_id(definition_id: str, account_id: str, episode: int, contact_id: str) -> str:
    """Return the deterministic event id of one contact's MQL in one qualification episode."""
    digest = hashlib.sha256(
        "\x1f".join((definition_id, account_id, str(episode), contact_id)).encode()
    ).hexdigest()
    return f"closedloop-mql-{digest[:40]}"


def qualify_accounts(session: Session, settings: Settings, *, now: datetime) -> int:
    """Open and close qualification episodes under the active definition; return MQLs written."""
    definition = active_definition(session)
    if definition is None:
        return 0
    markov = _latest_results(session, "markov")
    scorer = None if markov is None else Scorer(markov)
    grade_json = _latest_results(session, "grade")
    grade_fit = None if grade_json is None else grade_fit_from_json(grade_json)
    journeys = open_journeys(session, now=now, lookback_days=settings.lookback_days)
    attributes = account_attributes(session, journeys)
    open_episodes = {
        row.account_id: row
        for row in session.scalars(
            select(LeadQualificationRow).where(
                LeadQualificationRow.definition_id == definition.definition_id,
                LeadQualificationRow.ended_at.is_(None),
            )
        )
    }
    qualified: dict[str, tuple[float | None, str | None, float | None]] = {}
    for account_id, touches in journeys.items():
        held = attributes[account_id]
        score = None
        if scorer is not None:
            score = scorer.score([t.channel or UNKNOWN_CHANNEL for t in touches])[0]
        graded = None
        if grade_fit is not None:
            graded = grade(grade_fit, account_features(held.own, held.contacts.values()))
        ok, _ = meets(
            definition.rule,
            score=score,
            grade=None if graded is None else graded.letter,
            attribute_keys=present_keys(held.own, held.contacts.values()),
        )
        if ok:
            qualified[account_id] = (
                score,
                None if graded is None else graded.letter,
                None if graded is None else graded.raw,
            )
    ended = [a for a in open_episodes if a not in qualified]
    if ended:
        session.execute(
            update(LeadQualificationRow)
            .where(
                LeadQualificationRow.definition_id == definition.definition_id,
                LeadQualificationRow.ended_at.is_(None),
                among(session, LeadQualificationRow.account_id, ended),
            )
            .values(ended_at=now)
            .execution_options(synchronize_session=False)
        )
    fresh = sorted(a for a in qualified if a not in open_episodes)
    return _open_episodes(session, definition, fresh, qualified, attributes, now=now)


def _open_episodes(
    session: Session,
    definition: Definition,
    accounts: Sequence[str],
    qualified: dict[str, tuple[float | None, str | None, float | None]],
    attributes: dict[str, AccountAttributes],
    *,
    now: datetime,
) -> int:
    """Write the next episode of each account and the MQLs of its contacts below sales-ready."""
    if not accounts:
        return 0
    last = dict(
        session.execute(
            select(LeadQualificationRow.account_id, func.max(LeadQualificationRow.episode))
            .where(
                LeadQualificationRow.definition_id == definition.definition_id,
                among(session, LeadQualificationRow.account_id, accounts),
            )
            .group_by(LeadQualificationRow.account_id)
        ).all()
    )
    episodes, mqls = [], []
    below = _contacts_below(session, definition.rule, accounts)
    for account_id in accounts:
        episode = int(last.get(account_id) or 0) + 1
        score, letter, raw = qualified[account_id]
        episodes.append(
            {
                "definition_id": definition.definition_id,
                "account_id": account_id,
                "episode": episode,
                "version": definition.version,
                "qualified_at": now,
                "ended_at": None,
                "score": score,
                "grade": letter,
                "raw_grade": raw,
            }
        )
        for contact_id in below.get(account_id, []):
            event_id = mql_event_id(definition.definition_id, account_id, episode, contact_id)
            event = EVENT_ADAPTER.validate_python(
                {
                    "event_id": event_id,
                    "type": "contact.upserted",
                    "occurred_at": now.isoformat().replace("+00:00", "Z"),
                    "source": MQL_SOURCE,
                    "contact_id": contact_id,
                    "lifecycle_stage": "mql",
                }
            )
            mqls.append(
                {
                    "event_id": event_id,
                    "contact_id": contact_id,
                    "account_id": account_id,
                    "definition_id": definition.definition_id,
                    "version": definition.version,
                    "episode": episode,
                    "qualified_at": now,
                    "payload": encode(event).decode(),
                    "published_at": None,
                }
            )
    insert_ignore(session, LeadQualificationRow, episodes)
    insert_ignore(session, MqlRow, mqls)
    log.info(
        "%d accounts newly meet lead definition %s: %d MQLs",
        len(accounts),
        definition.definition_id,
        len(mqls),
    )
    return len(mqls)


def _contacts_below(
    session: Session, rule: LeadRule, accounts: Sequence[str]
) -> dict[str, list[str]]:
    """Return each account's root contacts that are neither sales-ready nor disqualified."""
    out: dict[str, list[str]] = {}
    for account_id, contact_id, stage in session.execute(
        select(ContactRow.effective_account_id, ContactRow.contact_id, ContactRow.lifecycle_stage)
        .where(
            among(session, ContactRow.effective_account_id, accounts),
            ContactRow.root_contact_id == ContactRow.contact_id,
        )
        .order_by(ContactRow.contact_id)
    ):
        if stage != "disqualified" and not is_sales_ready(rule, stage):
            out.setdefault(str(account_id), []).append(contact_id)
    return out


def publish_mqls(
    session: Session,
    send_all: Callable[[list[tuple[bytes, bytes]]], None],
    *,
    now: datetime,
    limit: int = 5000,
) -> int:
    """Publish MQL events not yet acknowledged, oldest first, then mark them; return how many.

    ``send_all`` publishes (key, value) records and returns only once the broker acknowledged
    every one (it raises otherwise, and nothing is marked).
    """
    rows = list(
        session.execute(
            select(MqlRow.event_id, MqlRow.payload)
            .where(MqlRow.published_at.is_(None))
            .order_by(MqlRow.qualified_at, MqlRow.event_id)
            .limit(limit)
        )
    )
    if not rows:
        return 0
    send_all([(partition_key(decode(p.encode())), p.encode()) for _, p in rows])
    session.execute(
        update(MqlRow)
        .where(among(session, MqlRow.event_id, [event_id for event_id, _ in rows]))
        .values(published_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(rows)
