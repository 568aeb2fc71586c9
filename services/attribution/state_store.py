"""Store new events and project them into derived state tables (no commits here).

Every function takes the caller's session; the worker's batch loop owns the transaction.
No statement here grows with the batch (see ``core.db.upsert``): a batch of any size and any
mix of events stays within every supported database's limits. Projections are re-derived from
the stored events of the touched entities (pure folds in ``domain.state``), so the result never
depends on arrival order or duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import orjson
from sqlalchemy import delete, or_, select, union, update
from sqlalchemy.orm import Session, aliased

from services.attribution.conflicts import Conflict, Origin
from services.attribution.event_cache import EventCache, load_events
from services.core.db.schema import (
    CampaignCostDayRow,
    CampaignCostRow,
    CampaignRow,
    ContactRow,
    EventRow,
    FxRateRow,
    TouchRow,
)
from services.core.db.upsert import among, insert_ignore, insert_new, upsert
from services.core.events import (
    CampaignCost,
    CampaignUpserted,
    ContactMerged,
    ContactUpserted,
    Event,
    FxRate,
    Touch,
    encode,
    sort_key,
)
from services.core.money import to_minor
from services.domain.state import (
    Rate,
    convert,
    fold_campaign,
    fold_contact,
    resolve_merges,
    spread_days,
)

Span = tuple[datetime, datetime]


def _widen(spans: dict[str, Span], key: str, at: datetime) -> None:
    low, high = spans.get(key, (at, at))
    spans[key] = (min(low, at), max(high, at))


@dataclass
class Impact:
    """What a batch touched: resolved after its commit into the deals and roots to recompute.

    ``accounts`` and ``roots`` changed membership (a contact moved account or was merged): any
    won deal of theirs may change. ``touch_accounts`` and ``touch_roots`` only gained touches,
    at times within the given span: a won deal can change only if its journey window
    ``[C - lookback, W]`` meets that span. The funnel fields name the contacts whose stage
    history may have changed (``stage_contacts``: a stage change, or a touch that is a sales
    response by its type), the contacts of new touches with their campaigns (a response if the
    campaign is sales-sourced, as committed when resolved), and the campaigns whose
    sales-sourced flag flipped.
    """

    deal_ids: set[str] = field(default_factory=set)
    accounts: set[str] = field(default_factory=set)
    roots: set[str] = field(default_factory=set)
    touch_accounts: dict[str, Span] = field(default_factory=dict)
    touch_roots: dict[str, Span] = field(default_factory=dict)
    # currency -> dates of rates that changed: only amounts converted on or after such a date,
    # at a rate not later than it, can change.
    fx_changes: dict[str, set[date]] = field(default_factory=dict)
    stage_contacts: set[str] = field(default_factory=set)
    touch_campaigns: dict[str, set[str]] = field(default_factory=dict)  # contact -> campaigns
    flipped_campaigns: set[str] = field(default_factory=set)

    def note_rate(self, currency: str, on: date) -> None:
        """Record that a rate of ``currency`` dated ``on`` changed."""
        self.fx_changes.setdefault(currency, set()).add(on)

    def note_touch(self, *, account: str | None, root: str | None, at: datetime) -> None:
        """Record a new touch at ``at`` that belongs to ``account`` and/or contact ``root``."""
        if account:
            _widen(self.touch_accounts, account, at)
        if root:
            _widen(self.touch_roots, root, at)

    def __bool__(self) -> bool:
        return any(bool(value) for value in vars(self).values())

    def merge(self, other: Impact) -> None:
        """Add ``other``'s changes to this impact (spans widen, sets unite)."""
        self.deal_ids |= other.deal_ids
        self.accounts |= other.accounts
        self.roots |= other.roots
        self.stage_contacts |= other.stage_contacts
        self.flipped_campaigns |= other.flipped_campaigns
        for mine, theirs in (
            (self.touch_accounts, other.touch_accounts),
            (self.touch_roots, other.touch_roots),
        ):
            for key, (low, high) in theirs.items():
                _widen(mine, key, low)
                _widen(mine, key, high)
        for currency, dates in other.fx_changes.items():
            self.fx_changes.setdefault(currency, set()).update(dates)
        for contact, campaigns in other.touch_campaigns.items():
            self.touch_campaigns.setdefault(contact, set()).update(campaigns)

    def to_json(self) -> bytes:
        """Serialise for ``pending_impacts`` (sets as sorted lists, times in ISO 8601)."""
        return orjson.dumps(
            {
                "deal_ids": sorted(self.deal_ids),
                "accounts": sorted(self.accounts),
                "roots": sorted(self.roots),
                "touch_accounts": self.touch_accounts,
                "touch_roots": self.touch_roots,
                "fx_changes": {c: sorted(d) for c, d in self.fx_changes.items()},
                "stage_contacts": sorted(self.stage_contacts),
                "touch_campaigns": {c: sorted(v) for c, v in self.touch_campaigns.items()},
                "flipped_campaigns": sorted(self.flipped_campaigns),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Impact:
        """Read an impact written by ``to_json``."""
        data = orjson.loads(raw)

        def spans(items: dict[str, list[str]]) -> dict[str, Span]:
            return {
                key: (datetime.fromisoformat(low), datetime.fromisoformat(high))
                for key, (low, high) in items.items()
            }

        return cls(
            deal_ids=set(data["deal_ids"]),
            accounts=set(data["accounts"]),
            roots=set(data["roots"]),
            touch_accounts=spans(data["touch_accounts"]),
            touch_roots=spans(data["touch_roots"]),
            fx_changes={
                c: {date.fromisoformat(d) for d in days} for c, days in data["fx_changes"].items()
            },
            stage_contacts=set(data["stage_contacts"]),
            touch_campaigns={c: set(v) for c, v in data["touch_campaigns"].items()},
            flipped_campaigns=set(data["flipped_campaigns"]),
        )


def _entity(event: Event, name: str) -> str | None:
    # Fields live in the model's __dict__; getattr on a missing one is slow in pydantic.
    return event.__dict__.get(name)


@dataclass(frozen=True)
class Stored:
    """What ``store_events`` did: the events it stored, and the copies that conflict."""

    new: list[Event]
    conflicts: list[Conflict]


def store_events(
    session: Session,
    events: Sequence[Event],
    *,
    stored_at: datetime,
    origins: Sequence[Origin | None] | None = None,
    cache: EventCache | None = None,
) -> Stored:
    """Insert the first copy of each new ``event_id``; return those and the conflicting copies.

    ``events`` come in log order (``origins``, parallel to them, say where each arrived), so
    of two new copies in one batch the earlier in the log is stored, whatever the arrival
    order of polls. A copy of a stored (or just stored) ``event_id`` is a duplicate when its
    canonical encoding equals the stored payload, else a conflict (contract §1): the stored
    copy stays, and the caller records the conflict. Copies of one event go to one partition
    (the key is its entity), so one worker at a time stores them; should copies with different
    keys race from two workers, the second insert fails on the key, and the batch's isolation
    path stores the event alone, finding the first copy then.
    """
    positions = list(origins) if origins is not None else [None] * len(events)
    first: dict[str, int] = {}
    for index, event in enumerate(events):
        first.setdefault(event.event_id, index)
    stored: dict[str, str] = dict(
        session.execute(
            select(EventRow.event_id, EventRow.payload).where(
                among(session, EventRow.event_id, list(first))
            )
        ).all()
    )
    kept: dict[str, str] = {}  # event_id -> payload of the copy just stored
    conflicts: list[Conflict] = []
    for index, event in enumerate(events):
        payload = encode(event).decode()
        held = stored.get(event.event_id)
        if held is None:
            if first[event.event_id] == index:
                kept[event.event_id] = payload
                continue
            held = kept[event.event_id]
        if payload != held:
            conflicts.append(Conflict(event.event_id, payload, held, positions[index]))
    fresh = [events[first[event_id]] for event_id in kept]
    if cache is not None:
        for event in fresh:
            cache.put(kept[event.event_id], event)
    insert_new(
        session,
        EventRow,
        [
            {
                "event_id": e.event_id,
                "type": e.type,
                "occurred_at": e.occurred_at,
                "source": e.source,
                "deal_id": _entity(e, "deal_id"),
                "contact_id": _entity(e, "contact_id"),
                "merged_contact_id": _entity(e, "merged_contact_id"),
                "account_id": _entity(e, "account_id"),
                "campaign_id": _entity(e, "campaign_id"),
                "payload": kept[e.event_id],
                "kafka_partition": _coordinate(positions[first[e.event_id]], 1),
                "kafka_offset": _coordinate(positions[first[e.event_id]], 2),
                "stored_at": stored_at,
            }
            for e in fresh
        ],
    )
    return Stored(fresh, conflicts)


def _coordinate(origin: Origin | None, index: int) -> int | None:
    return None if origin is None else int(origin[index])


def project_campaigns(
    session: Session, new: Sequence[Event], *, cache: EventCache | None = None
) -> None:
    """Re-derive the campaigns named by new ``campaign.upserted`` events."""
    ids = {e.campaign_id for e in new if isinstance(e, CampaignUpserted)}
    if not ids:
        return
    by_id: dict[str, list[CampaignUpserted]] = {}
    for e in load_events(
        session,
        cache,
        EventRow.type == "campaign.upserted",
        among(session, EventRow.campaign_id, ids),
    ):
        assert isinstance(e, CampaignUpserted)
        by_id.setdefault(e.campaign_id, []).append(e)
    rows = []
    for campaign_id, events in by_id.items():
        latest = fold_campaign(events)
        if latest is not None:
            rows.append(
                {
                    "campaign_id": campaign_id,
                    "name": latest.name,
                    "channel": latest.channel,
                    "is_sales_sourced": latest.is_sales_sourced,
                }
            )
    upsert(session, CampaignRow, rows)


def project_touches(session: Session, new: Sequence[Event], impact: Impact) -> None:
    """Insert new touches and note the accounts and contacts whose deals they may join."""
    touches = [e for e in new if isinstance(e, Touch)]
    if not touches:
        return
    insert_new(  # a touch row is written only with its (new) event
        session,
        TouchRow,
        [
            {
                "event_id": t.event_id,
                "occurred_at": t.occurred_at,
                "campaign_id": t.campaign_id,
                "contact_id": t.contact_id,
                "account_id": t.account_id,
                "touch_type": t.touch_type,
                "lead_created": t.lead_created,
            }
            for t in touches
        ],
    )
    contact_ids = {t.contact_id for t in touches if t.contact_id}
    links = {
        contact: (root, account)
        for contact, root, account in session.execute(
            select(
                ContactRow.contact_id, ContactRow.root_contact_id, ContactRow.effective_account_id
            ).where(among(session, ContactRow.contact_id, contact_ids))
        )
    }
    for t in touches:
        impact.note_touch(account=t.account_id, root=t.contact_id, at=t.occurred_at)
        if t.contact_id in links:
            root, account = links[t.contact_id]
            impact.note_touch(account=account, root=root, at=t.occurred_at)


def _contact_links(
    session: Session, contacts: set[str], roots: set[str]
) -> dict[str, tuple[str, str | None]]:
    """Map the given contacts and every contact under ``roots`` to (root, effective account)."""
    link = select(
        ContactRow.contact_id, ContactRow.root_contact_id, ContactRow.effective_account_id
    )
    # A UNION, not an OR: PostgreSQL scans the whole table for an OR of two ``= ANY`` tests.
    return {
        contact: (root, account)
        for contact, root, account in session.execute(
            union(
                link.where(among(session, ContactRow.contact_id, contacts)),
                link.where(among(session, ContactRow.root_contact_id, roots)),
            )
        )
    }


def _note_moves(
    impact: Impact,
    before: dict[str, tuple[str, str | None]],
    after: dict[str, tuple[str, str | None]],
) -> None:
    """Note the roots and accounts of contacts whose root or effective account changed.

    A contact without a row counts as its own root with no account, as journeys read it, so a
    lifecycle-stage change or a first upsert without an account changes no journey.
    """
    for contact in before.keys() | after.keys():
        old = before.get(contact, (contact, None))
        new = after.get(contact, (contact, None))
        if old == new:
            continue
        impact.roots.update({contact, old[0], new[0]})
        impact.accounts.update(a for a in (old[1], new[1]) if a)


def _in_merges(
    session: Session, existing: dict[str, str], merges: Sequence[ContactMerged]
) -> set[str]:
    """Return the contacts of ``existing`` (contact → root) and ``merges`` that some merge
    links: this batch's merges' contacts, contacts absorbed before (their root is another),
    and earlier survivors (another contact's root).

    The contacts rows show every merge committed before this batch: merges are projected under
    the merge lock, which a batch holding merges holds exclusively. A contact none of these is
    its own root, in no merge, so its root needs no merge read.
    """
    found = {c for m in merges for c in (m.contact_id, m.merged_contact_id)}
    found |= {c for c, root in existing.items() if root != c}
    survivors = select(ContactRow.root_contact_id).where(
        among(session, ContactRow.root_contact_id, set(existing)),
        ContactRow.contact_id != ContactRow.root_contact_id,
    )
    return found | set(session.scalars(survivors))


def _merges_linked(
    session: Session, contacts: set[str], cache: EventCache | None
) -> list[ContactMerged]:
    """Return every stored merge in the merge graphs of ``contacts`` (their connected parts).

    ``resolve_merges`` decides each merge only on merges sharing a contact with it, so on
    these it gives the roots of ``contacts`` and of everything linked to them exactly as on
    every merge ever stored, at a cost that follows the merges involved, not the whole log.
    """
    found: dict[str, ContactMerged] = {}
    seen, frontier = set(contacts), set(contacts)
    while frontier:
        linked = [
            e
            for column in (EventRow.contact_id, EventRow.merged_contact_id)
            for e in load_events(
                session, cache, EventRow.type == "contact.merged", among(session, column, frontier)
            )
            if isinstance(e, ContactMerged)
        ]
        found.update((e.event_id, e) for e in linked)
        frontier = {c for e in linked for c in (e.contact_id, e.merged_contact_id)} - seen
        seen |= frontier
    return list(found.values())


def project_contacts(
    session: Session, new: Sequence[Event], impact: Impact, *, cache: EventCache | None = None
) -> None:
    """Re-derive contacts named by new upserts and merges, their roots and effective accounts."""
    upserted = {e.contact_id for e in new if isinstance(e, ContactUpserted)}
    merges = [e for e in new if isinstance(e, ContactMerged)]
    affected = upserted | {c for m in merges for c in (m.contact_id, m.merged_contact_id)}
    if not affected:
        return
    existing = {
        r.contact_id: r.root_contact_id
        for r in session.execute(
            select(ContactRow.contact_id, ContactRow.root_contact_id).where(
                among(session, ContactRow.contact_id, affected)
            )
        )
    }
    roots_map: dict[str, str] = {}
    if merges:
        linked = _merges_linked(session, _in_merges(session, existing, merges), cache)
        full = resolve_merges(linked)
        new_roots = {full.get(c, c) for c in affected}
        roots_map = {c: r for c, r in full.items() if r in new_roots}
        affected |= set(roots_map)
        existing.update(
            {
                r.contact_id: r.root_contact_id
                for r in session.execute(
                    select(ContactRow.contact_id, ContactRow.root_contact_id).where(
                        among(session, ContactRow.contact_id, affected)
                    )
                )
            }
        )
    by_id: dict[str, list[ContactUpserted]] = {c: [] for c in affected}
    for e in load_events(
        session,
        cache,
        EventRow.type == "contact.upserted",
        among(session, EventRow.contact_id, affected),
    ):
        assert isinstance(e, ContactUpserted)
        by_id[e.contact_id].append(e)
    rows = []
    for contact_id, events in by_id.items():
        state = fold_contact(contact_id, events)
        root = roots_map.get(contact_id) or existing.get(contact_id) or contact_id
        rows.append(
            {
                "contact_id": contact_id,
                "account_id": state.account_id,
                "lifecycle_stage": state.lifecycle_stage,
                "merged_into": root if root != contact_id else None,
                "root_contact_id": root,
                "effective_account_id": None,
            }
        )
    # Every contact whose root or effective account the writes below can change: the affected
    # ones and all contacts under their old or new roots.
    before = _contact_links(
        session, affected, set(existing.values()) | {str(row["root_contact_id"]) for row in rows}
    )
    upsert(session, ContactRow, rows)
    roots = {str(row["root_contact_id"]) for row in rows} | {r for r, _ in before.values()}
    root_row = aliased(ContactRow)
    root_account = (
        select(root_row.account_id)
        .where(root_row.contact_id == ContactRow.root_contact_id)
        .scalar_subquery()
    )
    # Only rows whose value changes: a rewrite of an equal value is a dead row all the same.
    session.execute(
        update(ContactRow)
        .where(
            among(session, ContactRow.root_contact_id, roots),
            ContactRow.effective_account_id.is_distinct_from(root_account),
        )
        .values(effective_account_id=root_account)
        .execution_options(synchronize_session=False)
    )
    _note_moves(impact, before, _contact_links(session, affected, roots))


def project_fx_rates(session: Session, new: Sequence[Event], impact: Impact) -> None:
    """Keep the latest ``fx.rate`` per (date, base, quote); note the currencies that changed."""
    rates = sorted((e for e in new if isinstance(e, FxRate)), key=sort_key)
    if not rates:
        return
    keys = {(r.date, r.base, r.quote) for r in rates}
    # Three one-parameter tests and an exact filter here, not a tuple IN with three parameters
    # per key: a batch may carry any number of rates.
    candidates = session.scalars(
        select(FxRateRow).where(
            among(session, FxRateRow.rate_date, {day for day, _, _ in keys}),
            among(session, FxRateRow.base, {base for _, base, _ in keys}),
            among(session, FxRateRow.quote, {quote for _, _, quote in keys}),
        )
    )
    current = {
        key: row for row in candidates if (key := (row.rate_date, row.base, row.quote)) in keys
    }
    winners: dict[tuple[object, str, str], dict[str, object]] = {}
    for r in rates:
        key = (r.date, r.base, r.quote)
        row = current.get(key)
        if row is not None and (row.occurred_at, row.event_id) >= (r.occurred_at, r.event_id):
            continue
        winners[key] = {
            "rate_date": r.date,
            "base": r.base,
            "quote": r.quote,
            "rate": r.rate,
            "occurred_at": r.occurred_at,
            "event_id": r.event_id,
        }
        impact.note_rate(r.base, r.date)
        impact.note_rate(r.quote, r.date)
    upsert(session, FxRateRow, list(winners.values()))


def load_rates(session: Session, currencies: Iterable[str], reporting: str) -> list[Rate]:
    """Load every stored rate between ``currencies`` and the reporting currency."""
    currencies = set(currencies) - {reporting}
    if not currencies:
        return []
    rows = session.scalars(
        select(FxRateRow).where(
            or_(
                (among(session, FxRateRow.base, currencies)) & (FxRateRow.quote == reporting),
                (among(session, FxRateRow.quote, currencies)) & (FxRateRow.base == reporting),
            )
        )
    )
    return [Rate(r.rate_date, r.base, r.quote, Decimal(r.rate)) for r in rows]


def project_costs(
    session: Session, new: Sequence[Event], impact: Impact, *, reporting: str
) -> None:
    """Store new costs and (re)convert and spread every cost whose currency's rates changed."""
    costs = [e for e in new if isinstance(e, CampaignCost)]
    insert_ignore(
        session,
        CampaignCostRow,
        [
            {
                "event_id": c.event_id,
                "campaign_id": c.campaign_id,
                "amount_minor": to_minor(c.amount, c.currency),
                "currency": c.currency,
                "period_start": c.period_start,
                "period_end": c.period_end,
                "reporting_minor": None,
            }
            for c in costs
        ],
    )
    stale = {
        row.event_id: row
        for row in session.scalars(
            select(CampaignCostRow).where(
                among(session, CampaignCostRow.event_id, [c.event_id for c in costs])
            )
        )
    }
    # A cost converts at its period start's rate: a rate dated D can change only costs in its
    # currency starting on or after D. One query for all currencies, whatever their number
    # (an OR per currency would grow with the batch), then the exact test per row.
    since = {
        currency: min(dates)
        for currency, dates in impact.fx_changes.items()
        if currency != reporting
    }
    if since:
        for row in session.scalars(
            select(CampaignCostRow).where(
                among(session, CampaignCostRow.currency, since),
                CampaignCostRow.period_start >= min(since.values()),
            )
        ):
            if row.period_start >= since[row.currency]:
                stale[row.event_id] = row
    reconvert_costs(session, list(stale.values()), reporting=reporting)


def reconvert_costs(session: Session, rows: Sequence[CampaignCostRow], *, reporting: str) -> None:
    """Convert the given costs into the reporting currency and spread them over their days."""
    if not rows:
        return
    rates = load_rates(session, {r.currency for r in rows}, reporting)
    session.execute(
        delete(CampaignCostDayRow).where(
            among(session, CampaignCostDayRow.cost_event_id, [r.event_id for r in rows])
        )
    )
    days = []
    for row in rows:
        conv = convert(
            row.amount_minor,
            source=row.currency,
            target=reporting,
            on=row.period_start,
            rates=rates,
        )
        row.reporting_minor = conv.amount_minor
        if conv.amount_minor is not None:
            days += [
                {
                    "cost_event_id": row.event_id,
                    "day": day,
                    "campaign_id": row.campaign_id,
                    "cost_minor": minor,
                }
                for day, minor in spread_days(conv.amount_minor, row.period_start, row.period_end)
            ]
    session.flush()
    insert_ignore(session, CampaignCostDayRow, days)
