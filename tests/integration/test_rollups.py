"""The report rollups equal the rows they summarise, after any history (issue 13 §3).

Random histories run against a real database of each dialect: batches of events (touches,
deals created, updated, won, lost and reopened across midnights, amounts in USD and EUR, fx
rates arriving late), replays of everything applied so far, recomputes of some or all deals,
a fit, a custom model defined, computed and deleted, hand edits through the ORM, and
compactions. After every step, the rollups' sums per key equal the sums computed here
directly from ``credits``, ``deal_attributions`` and ``deals`` (and, for the influence
rollup, the (deal, campaign) pairs of the ``linear`` credits at the deal's ``linear``
attribution amount): money and counts exactly, fractional deals within 1e-9. The examples
share one database per dialect, so each one starts from the state the previous ones left.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.api.definitions import delete_model
from services.api.params import Period
from services.api.reports import roi_report
from services.attribution.credits import recompute_deals
from services.attribution.fitting import request_fit, run_requested_fits
from services.attribution.projector import apply_events
from services.attribution.registry import active_models, sync_builtin_models
from services.core.auth import Principal
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.rollups import compact_rollups
from services.core.db.schema import (
    AttributionModelRow,
    AttributionRollupRow,
    CreditRollupRow,
    CreditRow,
    DealAttributionRow,
    DealRow,
    InfluenceRollupRow,
    WonRollupRow,
)
from services.core.settings import Settings
from services.domain import make_positional_model
from tests.support.builders import at, campaign, deal_created, deal_status, events, fx, touch
from tests.support.infra import postgres_database

pytestmark = pytest.mark.integration

NOW = datetime(2026, 9, 1, tzinfo=UTC)
CAMPAIGNS = (("c-mail", "email"), ("c-web", "webinar"), ("c-ads", "paid_search"))
ACCOUNTS = ("A0", "A1", "A2")
DEALS = tuple(f"D{i}" for i in range(8))
AMOUNTS = ("0.00", "0.01", "100.00", "333.33", "1000.00")
CUSTOM = "halves"
ADMIN = Principal(key_id=1, name="test", scopes=frozenset({"admin"}))
serial = itertools.count()  # event ids unique over the whole session

# Quarter days from T0 (12:00 UTC): closes and touches fall either side of midnights.
moments = st.integers(min_value=0, max_value=24).map(lambda q: q / 4)


@st.composite
def event(draw: st.DrawFn) -> dict[str, Any]:
    """One canonical event of a small world, with an id never drawn before."""
    eid = f"e{next(serial)}"
    kinds = ["touch"] * 3 + ["created"] * 2 + ["won"] * 3 + ["lost", "reopened", "fx"]
    kind = draw(st.sampled_from(kinds))
    deal, days = draw(st.sampled_from(DEALS)), draw(moments)
    if kind == "touch":
        cid = draw(st.sampled_from(CAMPAIGNS))[0]
        lead = draw(st.booleans())
        return touch(eid, cid, days, account=draw(st.sampled_from(ACCOUNTS)), lead=lead)
    if kind == "created":
        created = deal_created(
            deal,
            draw(st.sampled_from(ACCOUNTS)),
            draw(st.sampled_from(AMOUNTS)),
            days,
            currency=draw(st.sampled_from(["USD", "USD", "EUR"])),
        )
        return created | {"event_id": eid}
    if kind == "fx":
        day = f"2026-03-0{draw(st.integers(min_value=1, max_value=7))}"
        return fx(day, "EUR", "USD", draw(st.sampled_from(["1.1", "0.9", "1.25"])), eid=eid)
    status = {"won": "closed_won", "lost": "closed_lost", "reopened": "reopened"}[kind]
    fields = {}
    if kind == "won" and draw(st.booleans()):
        fields = {"amount": draw(st.sampled_from(AMOUNTS)), "currency": "USD"}
    return deal_status(deal, status, days, eid=eid, **fields)


step = st.one_of(
    st.tuples(st.just("events"), st.lists(event(), min_size=1, max_size=15)),
    st.tuples(st.just("replay"), st.none()),
    st.tuples(st.just("recompute"), st.lists(st.sampled_from(DEALS), max_size=3)),
    st.tuples(st.just("recompute_all"), st.none()),
    st.tuples(st.just("define"), st.sampled_from(["0.5", "0.25"])),
    st.tuples(st.just("delete"), st.none()),
    st.tuples(st.just("fit"), st.none()),
    st.tuples(st.just("hand_edit"), st.integers(min_value=0, max_value=50)),
    st.tuples(st.just("compact"), st.none()),
)


# --- what the rollups must equal, summed here from the summarised rows ---------------------


def day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def expected(session: Session) -> dict[str, dict[tuple[Any, ...], list[float]]]:
    """Per rollup and key: the sums of the summarised rows (empty keys absent)."""
    out: dict[str, dict[tuple[Any, ...], list[float]]] = {
        "credit": defaultdict(lambda: [0, 0.0, 0]),
        "attribution": defaultdict(lambda: [0, 0, 0, 0]),
        "won": defaultdict(lambda: [0, 0, 0]),
        "influence": defaultdict(lambda: [0, 0, 0, 0]),
    }
    weights: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for c in session.scalars(select(CreditRow)):
        key = (c.model_id, c.campaign_id, day(c.closed_at))
        out["credit"][key][0] += c.credit_minor
        out["credit"][key][2] += 1
        weights[key].append(c.weight)
    for key, values in weights.items():
        out["credit"][key][1] = math.fsum(values)
    for a in session.scalars(select(DealAttributionRow)):
        sums = out["attribution"][(a.model_id, day(a.closed_at), a.fit_id)]
        for i, value in enumerate((1, a.amount_minor, a.attributed_minor, a.unattributed_minor)):
            sums[i] += value
    for d in session.scalars(select(DealRow).where(DealRow.status == "won")):
        if d.closed_at is None:
            continue
        sums = out["won"][(day(d.closed_at), d.conversion or "unconverted", d.currency)]
        for i, value in enumerate((1, d.amount_minor or 0, d.reporting_minor or 0)):
            sums[i] += value
    # Influence: each (deal, campaign) of a deal's linear credits once, at the deal's linear
    # attribution amount; sourced when one of the campaign's touches holds lead_creation.
    linear = select(DealAttributionRow).where(DealAttributionRow.model_id == "linear")
    amounts = {a.deal_id: a.amount_minor for a in session.scalars(linear)}
    pairs: dict[tuple[Any, ...], bool] = {}
    for c in session.scalars(select(CreditRow).where(CreditRow.model_id == "linear")):
        if c.deal_id in amounts:
            pair = (c.deal_id, c.campaign_id, day(c.closed_at))
            pairs[pair] = pairs.get(pair, False) or "lead_creation" in c.roles.split(",")
    for (deal_id, campaign_id, on), sourced in pairs.items():
        sums = out["influence"][(campaign_id, on)]
        amount = amounts[deal_id]
        for i, value in enumerate((amount if sourced else 0, int(sourced), amount, 1)):
            sums[i] += value
    return out


def rolled_up(session: Session) -> dict[str, dict[tuple[Any, ...], list[float]]]:
    """Per rollup and key: the sums of its delta rows."""
    out: dict[str, dict[tuple[Any, ...], list[float]]] = {
        "credit": defaultdict(lambda: [0, 0.0, 0]),
        "attribution": defaultdict(lambda: [0, 0, 0, 0]),
        "won": defaultdict(lambda: [0, 0, 0]),
        "influence": defaultdict(lambda: [0, 0, 0, 0]),
    }
    for c in session.scalars(select(CreditRollupRow)):
        sums = out["credit"][(c.model_id, c.campaign_id, c.day)]
        sums[0] += c.revenue_minor
        sums[1] += c.deals
        sums[2] += c.credits
    for a in session.scalars(select(AttributionRollupRow)):
        sums = out["attribution"][(a.model_id, a.day, a.fit_id)]
        for i, value in enumerate((a.deals, a.amount_minor, a.attributed_minor)):
            sums[i] += value
        sums[3] += a.unattributed_minor
    for w in session.scalars(select(WonRollupRow)):
        sums = out["won"][(w.day, w.conversion, w.currency)]
        for i, value in enumerate((w.deals, w.amount_minor, w.reporting_minor)):
            sums[i] += value
    for r in session.scalars(select(InfluenceRollupRow)):
        sums = out["influence"][(r.campaign_id, r.day)]
        values = (r.sourced_minor, r.sourced_deals, r.influenced_minor, r.influenced_deals)
        for i, value in enumerate(values):
            sums[i] += value
    return out


def assert_rollups_match(sessions: sessionmaker[Session], when: str) -> None:
    with sessions() as session:
        want, have = expected(session), rolled_up(session)
    for name in want:
        for key in set(want[name]) | set(have[name]):
            w = want[name].get(key, [0] * len(have[name].get(key, [0, 0, 0])))
            h = have[name].get(key, [0] * len(w))
            for i, (a, b) in enumerate(zip(w, h, strict=True)):
                if isinstance(a, float) or isinstance(b, float):
                    assert abs(a - b) < 1e-9, (when, name, key, i, w, h)
                else:
                    assert a == b, (when, name, key, i, w, h)


# --- the steps ------------------------------------------------------------------------------


def recompute_all(sessions: sessionmaker[Session], settings: Settings, ids: Any = None) -> None:
    with sessions.begin() as session:
        models = active_models(session, settings)
        deal_ids = list(session.scalars(select(DealRow.deal_id))) if ids is None else ids
        recompute_deals(session, deal_ids, settings=settings, models=models)


def define_custom(sessions: sessionmaker[Session], settings: Settings, weight: str) -> None:
    """Define (or redefine) the custom model and credit every deal under it."""
    params = make_positional_model(CUSTOM, {"first": weight, "last": "0.5"}).params()
    with sessions.begin() as session:
        row = session.get(AttributionModelRow, CUSTOM)
        if row is None:
            row = AttributionModelRow(
                model_id=CUSTOM,
                kind="positional",
                description="",
                builtin=False,
                position=99,
                progress_done=0,
                progress_total=0,
            )
            session.add(row)
        row.params, row.status = json.dumps(params), "computing"
    with sessions.begin() as session:
        models = [m for m in active_models(session, settings) if m.model_id == CUSTOM]
        deal_ids = list(session.scalars(select(DealRow.deal_id)))
        recompute_deals(session, deal_ids, settings=settings, models=models)


def hand_edit(sessions: sessionmaker[Session], pick: int) -> None:
    """Change, add or delete summarised rows through the ORM, as an admin fixing data would."""
    with sessions.begin() as session:
        credits = list(session.scalars(select(CreditRow).order_by(CreditRow.deal_id)))
        deals = list(session.scalars(select(DealRow).order_by(DealRow.deal_id)))
        attributions = list(session.scalars(select(DealAttributionRow)))
        if credits:
            credit = credits[pick % len(credits)]
            credit.credit_minor += 7
            credit.weight = credit.weight / 2
        linear = [c for c in credits if c.model_id == "linear"]
        if linear and pick % 3 == 0:  # a journey touch moves campaign: influence pairs change
            linear[pick % len(linear)].campaign_id = CAMPAIGNS[pick % len(CAMPAIGNS)][0]
        if deals:
            deal = deals[pick % len(deals)]
            deal.status = "won"
            deal.closed_at = datetime.fromisoformat(at(pick / 8))
            deal.reporting_minor = None if deal.reporting_minor else 12_345
        if attributions and pick % 2:
            # Every other time a linear one: its deal's influence pairs lose their amount.
            chosen = [a for a in attributions if a.model_id == "linear"] if pick % 4 == 1 else []
            chosen = chosen or attributions
            session.delete(chosen[pick % len(chosen)])


def run(sessions: sessionmaker[Session], settings: Settings, steps: list[Any]) -> None:
    applied: list[dict[str, Any]] = []
    for kind, arg in steps:
        if kind == "events":
            with sessions.begin() as session:
                apply_events(session, events(*arg), settings=settings, now=NOW)
            applied += arg
        elif kind == "replay" and applied:
            with sessions.begin() as session:
                apply_events(session, events(*applied), settings=settings, now=NOW)
        elif kind == "recompute":
            recompute_all(sessions, settings, arg)
        elif kind == "recompute_all":
            recompute_all(sessions, settings)
        elif kind == "define":
            define_custom(sessions, settings, arg)
        elif kind == "delete":
            with sessions() as session:
                exists = session.get(AttributionModelRow, CUSTOM) is not None
            if exists:
                delete_model(sessions, CUSTOM, principal=ADMIN)
        elif kind == "fit":
            with sessions.begin() as session:
                request_fit(session, "markov", now=NOW)
            run_requested_fits(sessions, settings)
        elif kind == "hand_edit":
            hand_edit(sessions, arg)
        elif kind == "compact":
            with sessions.begin() as session:
                compact_rollups(session)
        assert_rollups_match(sessions, kind)
    with sessions.begin() as session:
        compact_rollups(session)
    assert_rollups_match(sessions, "final compaction")
    assert_one_row_per_key(sessions)  # one writer: the incremental pass leaves none behind


def assert_one_row_per_key(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        for rollup in (CreditRollupRow, AttributionRollupRow, WonRollupRow, InfluenceRollupRow):
            rows = list(session.execute(select(rollup)).scalars())
            keys = {_key(r) for r in rows}
            assert len(keys) == len(rows), rollup.__tablename__


def _key(row: Any) -> tuple[Any, ...]:
    if isinstance(row, CreditRollupRow):
        return (row.model_id, row.campaign_id, row.day)
    if isinstance(row, AttributionRollupRow):
        return (row.model_id, row.day, row.fit_id)
    if isinstance(row, InfluenceRollupRow):
        return (row.campaign_id, row.day)
    return (row.day, row.conversion, row.currency)


@pytest.fixture()
def world(db_url: str) -> Iterator[tuple[sessionmaker[Session], Settings]]:
    settings = Settings(_env_file=None, database_url=db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        apply_events(
            session, events(*(campaign(c, ch) for c, ch in CAMPAIGNS)), settings=settings, now=NOW
        )
    yield sessions, settings
    engine.dispose()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_rollups_equal_the_rows_they_summarise(
    world: tuple[sessionmaker[Session], Settings], steps: list[Any]
) -> None:
    run(*world, steps)


def test_compaction_beside_concurrent_writers_keeps_every_delta() -> None:
    """PostgreSQL: a compaction removes only rows it saw, so a delta committed after it
    started still counts, and two compactions at once never sum a row twice."""
    with postgres_database("closedloop_rollups") as url:
        compact_beside_writers(url)


def compact_beside_writers(url: str) -> None:
    settings = Settings(_env_file=None, database_url=url)
    engine = make_engine(url, pool_size=4)
    sessions = make_sessionmaker(engine)
    world = events(
        *(campaign(c, ch) for c, ch in CAMPAIGNS),
        deal_created("K1", "A0", "100.00", 0),
        touch("k-t1", "c-mail", 1, account="A0"),
        touch("k-t2", "c-web", 2, account="A0"),
        deal_status("K1", "closed_won", 3),
    )
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        apply_events(session, world, settings=settings, now=NOW)
    with sessions.begin() as session:  # several rows for the deal's keys
        apply_events(
            session,
            events(touch("k-t3", "c-ads", 2.5, account="A0")),
            settings=settings,
            now=NOW,
        )
    writer = sessions()
    writer.begin()
    apply_events(  # a delta not committed when the compaction starts
        writer, events(touch("k-t4", "c-mail", 2.75, account="A0")), settings=settings, now=NOW
    )
    first, second = sessions(), sessions()
    first.begin()
    compact_rollups(first)
    done = threading.Event()

    def compact_again() -> None:
        with second.begin():
            compact_rollups(second)  # waits for the first one's row locks
        done.set()

    thread = threading.Thread(target=compact_again)
    thread.start()
    assert not done.wait(0.5)  # blocked behind the first compaction
    first.commit()
    writer.commit()
    thread.join(30)
    assert done.is_set()
    assert_rollups_match(sessions, "concurrent compactions")
    with sessions.begin() as session:
        compact_rollups(session, full=True)
    assert_one_row_per_key(sessions)
    assert_rollups_match(sessions, "full compaction")
    for session in (writer, first, second):
        session.close()
    engine.dispose()


def test_a_report_drops_a_campaign_whose_credits_went_away_but_keeps_weight_zero_ones(
    db_url: str,
) -> None:
    """ROI rows are the campaigns with a credit row in range: one whose credits all went away
    (the deal reopened) has none, though its rollup rows remain until a compaction; one whose
    only credit has weight 0 (first touch: the later touches) keeps its row."""
    settings = Settings(_env_file=None, database_url=db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    history = events(
        *(campaign(c, ch) for c, ch in CAMPAIGNS),
        deal_created("R1", "A0", "100.00", 0),
        touch("r-t1", "c-mail", 1, account="A0"),
        touch("r-t2", "c-web", 2, account="A0"),
        deal_status("R1", "closed_won", 3),
        deal_created("R2", "A1", "40.00", 0),
        touch("r-t3", "c-ads", 1, account="A1"),
        deal_status("R2", "closed_won", 3),
    )
    with sessions.begin() as session:
        sync_builtin_models(session, settings)
        apply_events(session, history, settings=settings, now=NOW)

    def rows(model_id: str) -> dict[str | None, tuple[str, float]]:
        with sessions() as session:
            report = roi_report(
                session, model_id=model_id, period=Period(), group_by="campaign", currency="USD"
            )
        return {r.campaign_id: (r.revenue, r.deals) for r in report.rows}

    assert rows("first_touch") == {
        "c-mail": ("100.00", 1.0),
        "c-web": ("0.00", 0.0),  # weight 0, still credited
        "c-ads": ("40.00", 1.0),
    }
    with sessions.begin() as session:
        apply_events(session, events(deal_status("R1", "reopened", 4)), settings=settings, now=NOW)
    assert rows("first_touch") == {"c-ads": ("40.00", 1.0)}
    assert rows("linear") == {"c-ads": ("40.00", 1.0)}
    engine.dispose()
