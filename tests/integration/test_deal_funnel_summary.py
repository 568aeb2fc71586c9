"""The worker's deal funnel entries equal a plain recomputation from the events.

``deal_stages`` (each CRM stage's first appearance) and ``deal_stage_entries`` are kept batch
by batch, with the worker's maintenance pass run between some batches (it rebuilds every
deal's entries when the stage order moved); the expected rows are computed here, plainly,
from the whole event list: the order (CRM stages by first appearance, then ``won``), each
deal's collapsed history, its first entry into every stage, the time to the first later step
into a stage further along, and whether the loss came right after. Random stage names, times
(some backdated, so the order moves), losses, reopenings and wins, in random batches.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from services.attribution.batch import Record, apply_batch
from services.attribution.deal_funnel import publish, refresh_deal_funnel, retarget, rewrite_all
from services.attribution.dirty import drain
from services.attribution.projector import apply_events
from services.core.db.deal_stages import stored_order
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import DealStageEntryRow, DealStageRow
from services.core.settings import Settings
from tests.support import builders as b

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
STAGES = ["discovery", "demo", "proposal", "won", "negotiation"]  # "won": a CRM stage so named
HOUR_MICROS = 3_600_000_000


def story(rng: random.Random) -> list[dict[str, Any]]:
    """Random deal events: stage changes, losses, reopenings, wins, at whole hours."""
    out = []
    for n in range(12):
        deal = f"d{n}"
        for k in range(rng.randint(1, 6)):
            hours = rng.randint(0, 60)
            kind = rng.choice(["stage"] * 4 + ["won", "lost", "reopened"])
            e: dict[str, Any] = {
                "event_id": f"{deal}-{k}",
                "occurred_at": (T0 + timedelta(hours=hours)).isoformat(),
                "deal_id": deal,
            }
            if kind == "stage":
                e |= {"type": "deal.updated", "stage": rng.choice(STAGES)}
            else:
                e["type"] = {"won": "deal.closed_won", "lost": "deal.closed_lost"}.get(
                    kind, "deal.reopened"
                )
            out.append(e)
    return out


def reference(events: list[dict[str, Any]]) -> tuple[dict[str, Any], set[tuple[Any, ...]]]:
    """The first appearances and the entry rows, computed plainly from the events."""
    steps: dict[str, list[tuple[datetime, str, str]]] = {}
    first: dict[str, tuple[datetime, str]] = {}
    for e in events:
        at = datetime.fromisoformat(e["occurred_at"])
        if e["type"] == "deal.updated":
            name = "stage:" + e["stage"]
            seen = (at, e["event_id"])
            first[e["stage"]] = min(first.get(e["stage"], seen), seen)
        elif e["type"] in ("deal.closed_won", "deal.closed_lost"):
            name = "won" if e["type"] == "deal.closed_won" else "lost"
        else:
            continue  # a reopening is not a step
        steps.setdefault(e["deal_id"], []).append((at, e["event_id"], name))
    order = ["stage:" + s for s in sorted(first, key=lambda s: first[s])] + ["won"]
    rows = set()
    for deal, unsorted in steps.items():
        history: list[tuple[datetime, str, str]] = []
        for step in sorted(unsorted):
            if not history or history[-1][2] != step[2]:
                history.append(step)
        for stage in [*order, "lost"]:
            index = next((i for i, s in enumerate(history) if s[2] == stage), None)
            if index is None:
                continue
            at = history[index][0]
            following = history[index + 1 :]
            nxt = None
            if stage in order:
                later = [s for s in following if s[2] in order]
                further = [s for s in later if order.index(s[2]) > order.index(stage)]
                if further:
                    nxt = int((further[0][0] - at) / timedelta(microseconds=1))
            lost = "lost" if following and following[0][2] == "lost" else None
            rows.add((deal, stage, at, nxt, lost))
    return first, rows


def stored(url: str) -> tuple[dict[str, Any], set[tuple[Any, ...]]]:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        first = {
            r.stage: (r.first_at, r.first_event_id) for r in session.scalars(select(DealStageRow))
        }
        e = DealStageEntryRow
        rows = {
            tuple(r)
            for r in session.execute(
                select(e.deal_id, e.stage, e.entered_at, e.next_micros, e.exit_stage)
            )
        }
    engine.dispose()
    return first, rows


def test_the_reference_itself_on_a_hand_worked_deal() -> None:
    events = [
        {"event_id": "a", "type": "deal.updated", "occurred_at": "2026-03-02T09:00:00+00:00",
         "deal_id": "x", "stage": "demo"},
        {"event_id": "b", "type": "deal.closed_lost", "occurred_at": "2026-03-02T10:00:00+00:00",
         "deal_id": "x"},
        {"event_id": "c", "type": "deal.reopened", "occurred_at": "2026-03-02T11:00:00+00:00",
         "deal_id": "x"},
        {"event_id": "d", "type": "deal.closed_won", "occurred_at": "2026-03-02T13:00:00+00:00",
         "deal_id": "x"},
    ]  # fmt: skip
    first, rows = reference(events)
    assert list(first) == ["demo"]
    assert rows == {
        ("x", "stage:demo", T0, 4 * HOUR_MICROS, "lost"),  # won 4 h later; lost right after
        ("x", "won", T0 + timedelta(hours=4), None, None),
        ("x", "lost", T0 + timedelta(hours=1), None, None),
    }


def seeded() -> list[dict[str, Any]]:
    """Every stage's first appearance, an hour before the story: the order is fixed by them."""
    return [
        {
            "event_id": f"seed-{i}",
            "type": "deal.updated",
            "occurred_at": (T0 - timedelta(hours=1)).isoformat(),
            "deal_id": "seed",
            "stage": stage,
        }
        for i, stage in enumerate(STAGES)
    ]


@pytest.mark.parametrize(
    ("seed", "order_moves", "queued"),
    [(1, True, False), (2, True, True), (3, False, False), (4, False, True), (6, False, True)],
)
def test_the_entries_are_the_same_whatever_the_arrival_order(
    db_url: str, seed: int, order_moves: bool, queued: bool
) -> None:
    """``order_moves``: the stages first appear in the random story, so the order moves and
    maintenance rebuilds; else a first batch fixes the order, one rebuild follows it, and
    every later entry is the recompute's rewrite. ``queued``: batches go the worker's way
    (records applied, their impacts queued, then drained: resolve, recompute, rewrite); else
    each batch settles in its own transaction."""
    rng = random.Random(seed)
    events = story(rng)
    shuffled = events[:]
    rng.shuffle(shuffled)
    cuts = sorted(rng.sample(range(1, len(shuffled)), 6))
    batches = [shuffled[i:j] for i, j in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    if not order_moves:
        events = seeded() + events
        batches = [seeded(), *batches]
    settings = Settings(_env_file=None, database_url=db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    for i, batch in enumerate(batches):
        if queued:
            record = Record("events", 0, i, orjson.dumps(batch))
            apply_batch(sessions, [record], settings=settings)
            drain(sessions, settings)
        else:
            with sessions.begin() as session:
                apply_events(session, b.events(*batch), settings=settings, now=T0)
        if i % 2 == 0:  # the maintenance pass runs between some batches only
            rebuilt = refresh_deal_funnel(sessions, settings)
            assert order_moves or rebuilt == (i == 0)
    assert not refresh_deal_funnel(sessions, settings) or order_moves
    want_first, want_rows = reference(events)
    have_first, have_rows = stored(db_url)
    assert have_first == want_first
    assert have_rows == want_rows
    # Replaying every batch changes nothing, and the next pass has nothing to rebuild.
    with sessions.begin() as session:
        apply_events(session, b.events(*events), settings=settings, now=T0)
    assert not refresh_deal_funnel(sessions, settings)
    assert stored(db_url) == (want_first, want_rows)


def test_changes_during_a_rebuild_end_under_the_new_order(db_url: str) -> None:
    """Batches committed between the rebuild's steps (after the new order became the
    target, between chunks, before it is published) end up under the new order too."""
    rng = random.Random(5)
    events = story(rng)
    early, middle, late = events[:20], events[20:40], events[40:]
    settings = Settings(_env_file=None, database_url=db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    with sessions.begin() as session:
        apply_events(session, b.events(*early), settings=settings, now=T0)
    assert refresh_deal_funnel(sessions, settings)  # ready under the early order
    # A backdated first appearance of a stage moves the order.
    backdated = {**seeded()[0], "event_id": "back"} | {
        "occurred_at": (T0 - timedelta(hours=5)).isoformat()
    }
    with sessions.begin() as session:
        apply_events(session, b.events(backdated, *middle), settings=settings, now=T0)
    target = retarget(sessions, settings)
    assert target is not None and target[0] == "discovery"
    with sessions() as session:
        assert stored_order(session) is None  # not ready: the report tallies the histories
    with sessions.begin() as session:  # committed after the target moved: written under it
        apply_events(session, b.events(*late), settings=settings, now=T0)
    assert rewrite_all(sessions, target)
    assert publish(sessions, target)
    with sessions() as session:
        assert stored_order(session) == target
    assert stored(db_url) == reference([*events, backdated])
    assert not refresh_deal_funnel(sessions, settings)
