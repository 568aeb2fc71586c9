"""Keep the funnel and SLA summaries: ``contact_stage_entries`` and ``handoffs`` (no commits).

Invariant: once every queued change is resolved (``services.attribution.dirty``: no row left in
``pending_impacts`` or ``dirty_roots``), the rows of every root contact R in both tables are
exactly ``summarize(history(R), responses(R))`` (``services.domain.stages``), where
- the members of R are the contacts whose ``contacts.root_contact_id`` is R, and R itself
  when it has no contact row (as the readers of ``lifecycle_changes`` always resolved it);
- ``history(R)`` is every ``lifecycle_changes`` row of a member;
- ``responses(R)`` are the times of the members' touches of a sales-sourced campaign (per
  ``campaigns`` now) or with ``touch_type`` ``meeting``, ``call`` or ``sales_email``;
and a contact that is not a root has no rows.

How it is kept: those inputs change only through a batch; the batch notes what it changed in
its impact (``note_funnel_changes``), and after its commit the impact is resolved against
committed state into dirty roots (``funnel_roots``), each rewritten (deleted, then inserted
from the root's full history) by whichever worker claims it. The roots are:
- roots of contacts with a new lifecycle step;
- old and new roots of every contact whose root changed (``Impact.roots``, merges): an
  absorbed root's rows are deleted, since it has no members any more;
- roots of contacts with a new touch that is a sales response;
- roots of every contact that touched a campaign whose ``is_sales_sourced`` the batch changed
  (a campaign defined after its touches included), before versus after the batch's events.
Each root is recomputed from scratch, so the result depends neither on arrival order nor on
how events fall into batches; a replayed batch stores no new event and so changes nothing
(and rewriting a root again would write the same rows). A root is rewritten by one worker at a
time (its claimed ``dirty_roots`` row), reading after the changes that marked it committed; a
change committed while it is rewritten marks it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, union
from sqlalchemy.orm import Session

from services.attribution.event_cache import EventCache, load_events
from services.attribution.state_store import Impact
from services.core.db.schema import (
    CampaignRow,
    ContactRow,
    ContactStageEntryRow,
    EventRow,
    HandoffRow,
    LifecycleChangeRow,
    TouchRow,
)
from services.core.db.upsert import among, insert_new
from services.core.events import (
    FUNNEL_STAGES,
    SIDE_EXITS,
    CampaignUpserted,
    ContactUpserted,
    Event,
    Touch,
)
from services.domain.stages import StageRules, Step, Summary, summarize
from services.domain.state import fold_campaign

SALES_TOUCH_TYPES = ("meeting", "call", "sales_email")
RULES = StageRules(
    order=FUNNEL_STAGES,
    exits=SIDE_EXITS,
    handoff="mql",
    responses=("sql", "recycled", "disqualified"),
)
ROOTS_PER_STEP = 5000  # roots rewritten per step: bounds the rows held in memory at once
ENTRY_COLUMNS = ("root_contact_id", "stage", "entered_at", "next_micros", "exit_stage")
HANDOFF_COLUMNS = ("root_contact_id", "mql_at", "week", "responded_at", "response_micros")
Rows = tuple[frozenset[tuple[Any, ...]], tuple[Any, ...] | None]  # a root's entries, hand-off


def summary_rows(root: str, summary: Summary) -> Rows:
    """Return one root's entries (``ENTRY_COLUMNS``) and hand-off (``HANDOFF_COLUMNS``)."""
    entries = frozenset(
        (root, e.stage, e.entered_at, e.next_micros, e.exit_stage) for e in summary.entries
    )
    h = summary.handoff
    handoff = None if h is None else (root, h.mql_at, h.week, h.responded_at, h.response_micros)
    return entries, handoff


def note_funnel_changes(
    session: Session, new: Sequence[Event], impact: Impact, *, cache: EventCache | None = None
) -> None:
    """Note in ``impact`` what of the funnel the batch's new events may have changed.

    Recorded in the batch's transaction, resolved into roots by ``funnel_roots`` after the
    commit: whether a touch is a sales response depends on its campaign's flag, which another
    partition may be changing at the same moment.
    """
    for e in new:
        if isinstance(e, ContactUpserted) and e.lifecycle_stage:
            impact.stage_contacts.add(e.contact_id)
        elif isinstance(e, Touch) and e.contact_id:
            if e.touch_type in SALES_TOUCH_TYPES:
                impact.stage_contacts.add(e.contact_id)
            else:
                impact.touch_campaigns.setdefault(e.contact_id, set()).add(e.campaign_id)
    impact.flipped_campaigns |= _flipped_campaigns(session, new, cache)


def funnel_roots(session: Session, impact: Impact) -> set[str]:
    """Return the roots whose funnel summaries an impact may have changed (committed state).

    Exact under concurrency: a touch and a flip of its campaign's flag committed by two
    workers are each resolved after their own commit, so whichever commits last sees both.
    """
    contacts = set(impact.stage_contacts)
    campaigns = {c for touched in impact.touch_campaigns.values() for c in touched}
    if campaigns:
        sales = set(
            session.scalars(
                select(CampaignRow.campaign_id).where(
                    among(session, CampaignRow.campaign_id, campaigns),
                    CampaignRow.is_sales_sourced.is_(True),
                )
            )
        )
        contacts |= {c for c, touched in impact.touch_campaigns.items() if touched & sales}
    if impact.flipped_campaigns:
        contacts |= set(
            session.scalars(
                select(TouchRow.contact_id)
                .where(
                    among(session, TouchRow.campaign_id, impact.flipped_campaigns),
                    TouchRow.contact_id.is_not(None),
                )
                .distinct()
            )
        )
    return _roots_of(session, contacts) | impact.roots


def _flipped_campaigns(
    session: Session, new: Sequence[Event], cache: EventCache | None
) -> set[str]:
    """Return the campaigns whose sales-sourced flag the batch's new events changed.

    A campaign's events share its partition, so its stored history is complete here.
    """
    fresh = {e.event_id for e in new if isinstance(e, CampaignUpserted)}
    if not fresh:
        return set()
    ids = {e.campaign_id for e in new if isinstance(e, CampaignUpserted)}
    by_id: dict[str, list[CampaignUpserted]] = {}
    for e in load_events(
        session,
        cache,
        EventRow.type == "campaign.upserted",
        among(session, EventRow.campaign_id, ids),
    ):
        assert isinstance(e, CampaignUpserted)
        by_id.setdefault(e.campaign_id, []).append(e)
    flipped = set()
    for campaign_id, events in by_id.items():
        before = fold_campaign(e for e in events if e.event_id not in fresh)
        after = fold_campaign(events)
        if bool(before and before.is_sales_sourced) != bool(after and after.is_sales_sourced):
            flipped.add(campaign_id)
    return flipped


def _roots_of(session: Session, contacts: set[str]) -> set[str]:
    """Return the roots of ``contacts`` (a contact without a row is its own root)."""
    found = dict(
        session.execute(
            select(ContactRow.contact_id, ContactRow.root_contact_id).where(
                among(session, ContactRow.contact_id, contacts)
            )
        ).all()
    )
    return {found.get(c, c) for c in contacts}


def rewrite_roots(session: Session, roots: Iterable[str]) -> None:
    """Replace the summary rows of ``roots`` with those computed from their full histories."""
    ordered = sorted(set(roots))
    for start in range(0, len(ordered), ROOTS_PER_STEP):
        chunk = ordered[start : start + ROOTS_PER_STEP]
        fresh = _recomputed(session, chunk).values()
        for row_cls in (ContactStageEntryRow, HandoffRow):
            session.execute(
                delete(row_cls)
                .where(among(session, row_cls.root_contact_id, chunk))
                .execution_options(synchronize_session=False)
            )
        entries = [dict(zip(ENTRY_COLUMNS, e, strict=True)) for r in fresh for e in r[0]]
        handoffs = [dict(zip(HANDOFF_COLUMNS, r[1], strict=True)) for r in fresh if r[1]]
        insert_new(session, ContactStageEntryRow, entries)
        insert_new(session, HandoffRow, handoffs)


def _recomputed(session: Session, roots: Sequence[str]) -> dict[str, Rows]:
    """Return the rows ``summarize`` gives each of ``roots`` that has a stage history."""
    members = _members(session, roots)
    steps: dict[str, list[Step]] = {}
    for contact, stage, at, event_id in session.execute(
        select(
            LifecycleChangeRow.contact_id,
            LifecycleChangeRow.stage,
            LifecycleChangeRow.occurred_at,
            LifecycleChangeRow.event_id,
        ).where(among(session, LifecycleChangeRow.contact_id, members))
    ):
        steps.setdefault(members[contact], []).append(Step(at, event_id, stage))
    responses = _responses(session, members)
    return {
        root: summary_rows(root, summarize(history, responses.get(root, ()), RULES))
        for root, history in steps.items()
    }


def _members(session: Session, roots: Sequence[str]) -> dict[str, str]:
    """Map every contact under ``roots`` to its root (a root without a row is its own)."""
    link = select(ContactRow.contact_id, ContactRow.root_contact_id)
    wanted = set(roots)
    members: dict[str, str] = {}
    with_rows = set()
    # A UNION, not an OR: PostgreSQL scans the whole table for an OR of two ``= ANY`` tests.
    for contact, root in session.execute(
        union(
            link.where(among(session, ContactRow.root_contact_id, roots)),
            link.where(among(session, ContactRow.contact_id, roots)),
        )
    ):
        if root in wanted:
            members[contact] = root
        if contact in wanted:
            with_rows.add(contact)
    members.update({root: root for root in roots if root not in with_rows})
    return members


def _responses(session: Session, members: dict[str, str]) -> dict[str, list[datetime]]:
    """Return the times of the members' sales-response touches, per root."""
    out: dict[str, list[datetime]] = {}
    for contact, at in session.execute(
        select(TouchRow.contact_id, TouchRow.occurred_at)
        .outerjoin(CampaignRow, CampaignRow.campaign_id == TouchRow.campaign_id)
        .where(
            among(session, TouchRow.contact_id, members),
            or_(
                CampaignRow.is_sales_sourced.is_(True),
                TouchRow.touch_type.in_(SALES_TOUCH_TYPES),
            ),
        )
    ):
        out.setdefault(members[str(contact)], []).append(at)
    return out
