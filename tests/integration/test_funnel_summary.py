"""The worker's funnel and SLA summaries equal a plain recomputation from the events.

``contact_stage_entries`` and ``handoffs`` are kept batch by batch; the expected rows are
computed here, plainly and independently, from the whole event list (merges resolved,
histories collapsed, the contract's rules applied), whatever the arrival order, batching,
late merges, late campaign definitions or replays. Times are hours after T0 (2026-03-02T09Z,
a Monday of ISO week 2026-W10).
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select

from services.attribution.projector import apply_events
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.migrate import alembic_config, upgrade
from services.core.db.schema import ContactStageEntryRow, HandoffRow
from services.core.settings import Settings
from tests.support import builders as b

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
FUNNEL = ["subscriber", "lead", "mql", "sql", "opportunity", "customer"]


def ts(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def stage(contact: str, hours: float, name: str) -> dict[str, Any]:
    return {
        "event_id": f"st-{contact}-{hours}",
        "type": "contact.upserted",
        "occurred_at": ts(hours),
        "contact_id": contact,
        "lifecycle_stage": name,
    }


def merged(survivor: str, absorbed: str, hours: float) -> dict[str, Any]:
    return {
        "event_id": f"merge-{absorbed}-{survivor}",
        "type": "contact.merged",
        "occurred_at": ts(hours),
        "contact_id": survivor,
        "merged_contact_id": absorbed,
    }


def touch(eid: str, campaign: str, hours: float, contact: str, kind: str) -> dict[str, Any]:
    return {
        "event_id": eid,
        "type": "touch",
        "occurred_at": ts(hours),
        "campaign_id": campaign,
        "contact_id": contact,
        "touch_type": kind,
    }


def campaign(cid: str, hours: float, *, sales: bool, eid: str | None = None) -> dict[str, Any]:
    e = b.campaign(cid, "outbound", sales=sales, eid=eid)
    return e | {"occurred_at": ts(hours)}


CAMPAIGNS = [campaign("sdr", -100, sales=True), campaign("ads", -100, sales=False)]
# The "late" campaign is defined (sales-sourced) after hank's touch of it, and later flipped.
LATE = campaign("late", 500, sales=True, eid="c-late-1")
LATE_OFF = campaign("late", 600, sales=False, eid="c-late-2")
MERGES = [
    merged("dave", "erin", 200),  # dave absorbs erin: her lead and mql count for dave
    merged("jo", "ivan", 90),  # ivan's mql is answered by jo's sdr touch
    merged("lee", "kim", 300),  # kim -> lee -> max: a chain
    merged("max", "lee", 310),
    merged("kim", "max", 320),  # would close a cycle: ignored
]
STEPS = [
    stage("alice", 0, "subscriber"),
    stage("alice", 24, "lead"),
    stage("alice", 48, "mql"),
    stage("alice", 84, "sql"),
    stage("alice", 144, "opportunity"),
    stage("alice", 240, "customer"),
    stage("bob", 12, "lead"),
    stage("bob", 24, "mql"),
    stage("bob", 54, "recycled"),
    stage("bob", 120, "lead"),
    stage("bob", 168, "mql"),
    stage("carol", 0, "subscriber"),
    stage("carol", 24, "disqualified"),
    stage("dave", 0, "subscriber"),
    stage("erin", 36, "lead"),
    stage("erin", 72, "mql"),
    stage("dave", 102, "sql"),
    stage("frank", 456, "lead"),
    stage("frank", 468, "lead"),
    stage("frank", 488, "mql"),
    stage("gina", 10, "mql"),
    stage("hank", 20, "mql"),
    stage("ivan", 30, "mql"),
    stage("jo", 5, "lead"),
    stage("kim", 1, "lead"),
    stage("kim", 50, "mql"),
    stage("lee", 40, "subscriber"),
    stage("max", 60, "sql"),
]
TOUCHES = [
    touch("t-alice", "ads", 60, "alice", "meeting"),  # answers alice before her sql
    touch("t-gina", "ads", 5, "gina", "call"),  # before her mql: not a response
    touch("t-gina2", "ads", 40, "gina", "form_fill"),  # not a sales touch
    touch("t-hank", "late", 30, "hank", "email_click"),  # a response once "late" is sales
    touch("t-jo", "sdr", 31.5, "jo", "email_click"),  # answers ivan (merged into jo)
    touch("t-max", "ads", 55, "max", "sales_email"),  # answers kim's mql (kim -> max)
]
EVENTS = CAMPAIGNS + STEPS + TOUCHES + MERGES + [LATE, LATE_OFF]


def reference(events: list[dict[str, Any]]) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """The rows both tables should hold for ``events``, computed plainly from the contract."""
    unique = list({e["event_id"]: e for e in reversed(events)}.values())
    ordered = sorted(unique, key=lambda e: (e["occurred_at"], e["event_id"]))
    parent: dict[str, str] = {}

    def root(c: str) -> str:
        while c in parent:
            c = parent[c]
        return c

    sales: dict[str, bool] = {}
    for e in ordered:
        if e["type"] == "contact.merged":
            survivor, absorbed = e["contact_id"], e["merged_contact_id"]
            if absorbed not in parent and root(survivor) != absorbed:
                parent[absorbed] = survivor
        elif e["type"] == "campaign.upserted" and "is_sales_sourced" in e:
            sales[e["campaign_id"]] = e["is_sales_sourced"]
    steps: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    answers: dict[str, list[datetime]] = defaultdict(list)
    for e in ordered:
        at = datetime.fromisoformat(e["occurred_at"])
        if e["type"] == "contact.upserted" and e.get("lifecycle_stage"):
            steps[root(e["contact_id"])].append((at, e["event_id"], e["lifecycle_stage"]))
        sales_touch = e["type"] == "touch" and (
            sales.get(e["campaign_id"], False)
            or e["touch_type"] in ("meeting", "call", "sales_email")
        )
        if sales_touch:
            answers[root(e["contact_id"])].append(at)
    entries, handoffs = set(), set()
    for r, raw in steps.items():
        history: list[tuple[datetime, str, str]] = []
        for step in sorted(raw):
            if not history or history[-1][2] != step[2]:
                history.append(step)
        names = [s[2] for s in history]
        for name in FUNNEL:
            if name not in names:
                continue
            i = names.index(name)
            later = [
                s
                for s in history[i + 1 :]
                if s[2] in FUNNEL and FUNNEL.index(s[2]) > FUNNEL.index(name)
            ]
            gap = (later[0][0] - history[i][0]) // timedelta(microseconds=1) if later else None
            after = names[i + 1] if i + 1 < len(names) else None
            exit_stage = after if after in ("recycled", "disqualified") else None
            entries.add((r, name, history[i][0], gap, exit_stage))
        if "mql" in names:
            i = names.index("mql")
            mql_at = history[i][0]
            by_stage = [
                s[0] for s in history[i + 1 :] if s[2] in ("sql", "recycled", "disqualified")
            ]
            candidates = by_stage[:1] + [t for t in answers[r] if t >= mql_at]
            first = min(candidates) if candidates else None
            gap = None if first is None else (first - mql_at) // timedelta(microseconds=1)
            year, week, _ = mql_at.isocalendar()
            handoffs.add((r, mql_at, f"{year}-W{week:02d}", first, gap))
    return entries, handoffs


def apply(url: str, batches: list[list[dict[str, Any]]]) -> None:
    settings = Settings(_env_file=None, database_url=url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    for batch in batches:
        with sessions() as session, session.begin():
            apply_events(session, b.events(*batch), settings=settings, now=T0)
    engine.dispose()


def stored(url: str) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        e, h = ContactStageEntryRow, HandoffRow
        entries = {
            tuple(row)
            for row in session.execute(
                select(e.root_contact_id, e.stage, e.entered_at, e.next_micros, e.exit_stage)
            )
        }
        handoffs = {
            tuple(row)
            for row in session.execute(
                select(h.root_contact_id, h.mql_at, h.week, h.responded_at, h.response_micros)
            )
        }
    engine.dispose()
    return entries, handoffs


def handoff_of(url: str, root: str) -> tuple[Any, ...] | None:
    return next((h for h in stored(url)[1] if h[0] == root), None)


def test_the_reference_itself_on_hand_worked_rows() -> None:
    entries, handoffs = reference(EVENTS)
    hour = 3_600_000_000
    # dave holds erin's lead (36 h) and mql (72 h); his sql at 102 h follows 30 h after.
    assert ("dave", "mql", T0 + timedelta(hours=72), 30 * hour, None) in entries
    assert not any(e[0] == "erin" for e in entries)
    # bob: recycled right after his first mql; his second mql is not a first entry.
    assert ("bob", "mql", T0 + timedelta(hours=24), None, "recycled") in entries
    # kim -> lee -> max (the cycle-closing merge is ignored): max's history is kim's lead
    # (1 h), lee's subscriber (40 h), kim's mql (50 h), max's sql (60 h), answered by max's
    # sales email at 55 h.
    assert (
        "max",
        T0 + timedelta(hours=50),
        "2026-W10",
        T0 + timedelta(hours=55),
        5 * hour,
    ) in handoffs
    # hank's touch of "late" at 30 h: "late" ends marketing-sourced, so no response.
    assert ("hank", T0 + timedelta(hours=20), "2026-W10", None, None) in handoffs
    # ivan (merged into jo) is answered by jo's sdr touch 1.5 h after his mql.
    assert (
        "jo",
        T0 + timedelta(hours=30),
        "2026-W10",
        T0 + timedelta(hours=31.5),
        1.5 * hour,
    ) in handoffs


@pytest.mark.parametrize("seed", [1, 2])
def test_the_summary_is_the_same_whatever_the_arrival_order(db_url: str, seed: int) -> None:
    shuffled = EVENTS[:]
    rng = random.Random(seed)
    rng.shuffle(shuffled)
    cuts = sorted(rng.sample(range(1, len(shuffled)), 4))
    batches = [shuffled[i:j] for i, j in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    apply(db_url, batches)
    assert stored(db_url) == reference(EVENTS)


def test_merges_arriving_late_move_the_absorbed_rows(db_url: str) -> None:
    apply(db_url, [CAMPAIGNS + STEPS + TOUCHES])
    assert stored(db_url) == reference(CAMPAIGNS + STEPS + TOUCHES)
    assert handoff_of(db_url, "erin") is not None  # her own root, before the merge
    apply(db_url, [[m] for m in reversed(MERGES)])  # newest first
    assert stored(db_url) == reference(CAMPAIGNS + STEPS + TOUCHES + MERGES)
    assert handoff_of(db_url, "erin") is None and handoff_of(db_url, "kim") is None


def test_a_campaign_becoming_sales_sourced_after_its_touches(db_url: str) -> None:
    apply(db_url, [CAMPAIGNS + STEPS + TOUCHES + MERGES])
    assert handoff_of(db_url, "hank") == ("hank", T0 + timedelta(hours=20), "2026-W10", None, None)
    apply(db_url, [[LATE]])  # "late" appears, sales-sourced: hank's 30 h touch answers him
    assert handoff_of(db_url, "hank") == (
        "hank",
        T0 + timedelta(hours=20),
        "2026-W10",
        T0 + timedelta(hours=30),
        10 * 3_600_000_000,
    )
    assert stored(db_url) == reference(EVENTS[:-1])
    apply(db_url, [[LATE_OFF]])  # and no longer
    assert stored(db_url) == reference(EVENTS)
    assert handoff_of(db_url, "hank") == ("hank", T0 + timedelta(hours=20), "2026-W10", None, None)


def test_replaying_batches_changes_nothing(db_url: str) -> None:
    batches = [EVENTS[:20], EVENTS[20:]]
    apply(db_url, batches)
    once = stored(db_url)
    apply(db_url, batches + [EVENTS])  # a crash before the offset commit: all seen again
    assert stored(db_url) == once == reference(EVENTS)


def test_the_migration_backfills_what_the_worker_keeps(sqlite_url: str) -> None:
    apply(sqlite_url, [EVENTS])
    kept = stored(sqlite_url)
    command.downgrade(alembic_config(sqlite_url), "0005")  # drops both tables
    upgrade(sqlite_url)  # 0006 rebuilds them from the stored histories
    assert stored(sqlite_url) == kept == reference(EVENTS)
