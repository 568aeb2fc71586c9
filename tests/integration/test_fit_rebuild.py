"""A refit becomes current only once all its credits are written, and resumes by itself.

Issue 9, items 14 and 3: a fit is stored ``applying``; its credits are rewritten chunk by
chunk; it becomes ``done`` when no won deal's credits come from another snapshot. An outage
(a real one: a TCP proxy between the maintenance and PostgreSQL is cut) or a stop in the
middle leaves it ``applying`` with the work left derivable from the database, and the next
maintenance pass finishes it. A model never fitted is fitted at the first pass once decided
deals exist, not after the schedule's interval.

Expected credits come from ``tests.support.reference`` (journeys, amounts, exact split) and
the contract's §4 rule written out below, applied to the fit's stored removal effects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from services.api.params import Period
from services.api.queries import deal_attribution_sums
from services.api.snapshots import used_by_reports
from services.attribution.batch import is_transient
from services.attribution.fitting import request_fit
from services.attribution.maintenance import maintain_models
from services.attribution.projector import apply_events
from services.attribution.registry import fits_in_force, latest_fits, sync_builtin_models
from services.attribution.worker import Worker
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import CreditRow, DealAttributionRow, DealRow, ModelFitRow
from services.core.events import EVENT_LIST_ADAPTER
from services.core.settings import Settings
from services.simulate import generate
from tests.integration.test_outages import postgres_behind_proxy
from tests.support import reference

pytestmark = pytest.mark.integration
START = datetime(2026, 5, 1, tzinfo=UTC)
NOW = datetime(2026, 9, 1, tzinfo=UTC)
CHUNK = 5


def history() -> list[dict[str, Any]]:
    return generate(seed=8, deals=80, start=START, days=120)


def apply(
    sessions: sessionmaker[Session], settings: Settings, events: list[dict[str, Any]]
) -> frozenset[str]:
    """Apply events as one worker batch; return the deals it recomputed."""
    with sessions() as session, session.begin():
        sync_builtin_models(session, settings)
        return apply_events(
            session, EVENT_LIST_ADAPTER.validate_python(events), settings=settings, now=NOW
        ).affected


def fits(sessions: sessionmaker[Session], model_id: str = "markov") -> list[ModelFitRow]:
    with sessions() as session:
        return list(
            session.scalars(
                select(ModelFitRow).where(ModelFitRow.model_id == model_id).order_by(ModelFitRow.id)
            )
        )


def markov_fit_ids(sessions: sessionmaker[Session]) -> dict[str, int | None]:
    """Won and converted deal -> the snapshot its markov credits come from (None: none)."""
    with sessions() as session:
        won = session.scalars(
            select(DealRow.deal_id).where(
                DealRow.status == "won", DealRow.conversion == "converted"
            )
        )
        used = dict(
            session.execute(
                select(DealAttributionRow.deal_id, DealAttributionRow.fit_id).where(
                    DealAttributionRow.model_id == "markov"
                )
            ).all()
        )
        return {deal_id: used.get(deal_id) for deal_id in won}


def expected_markov_credits(
    events: list[dict[str, Any]], effects: dict[str, Fraction]
) -> dict[tuple[str, str], int]:
    """(deal, touch) -> credit by contract §4, from the reference's journeys and amounts.

    The amount is split over the journey's channels in proportion to their removal effects
    (all zero: equally over its distinct channels), then evenly over each channel's touches,
    then rounded by largest remainder. A campaign never upserted counts as ``(unknown)``.
    """
    ref = reference.compute(events)
    channel_of = {c: v["channel"] for c, v in ref.campaigns.items()}
    touch_campaign = {e["event_id"]: e["campaign_id"] for e in events if e["type"] == "touch"}
    out: dict[tuple[str, str], int] = {}
    for deal in ref.deals.values():
        if deal.reporting_minor is None or not deal.journey:
            continue
        channels = [channel_of.get(touch_campaign[t]) or "(unknown)" for t in deal.journey]
        count = {c: channels.count(c) for c in set(channels)}
        raw = {c: max(effects.get(c, Fraction(0)), Fraction(0)) for c in count}
        if not sum(raw.values()):
            raw = dict.fromkeys(count, Fraction(1))
        total = sum(raw.values())
        weights = [raw[c] / total / count[c] for c in channels]
        for touch, credit in zip(
            deal.journey, reference.split_minor(deal.reporting_minor, weights), strict=True
        ):
            out[(deal.deal_id, touch)] = credit
    return out


def stored_markov_credits(sessions: sessionmaker[Session]) -> dict[tuple[str, str], int]:
    with sessions() as session:
        return {
            (r.deal_id, r.touch_event_id): r.credit_minor
            for r in session.scalars(select(CreditRow).where(CreditRow.model_id == "markov"))
        }


def check_all_from(sessions: sessionmaker[Session], fit: ModelFitRow, events: list[Any]) -> None:
    """Every won deal's markov credits come from ``fit``, whole and exact."""
    assert set(markov_fit_ids(sessions).values()) == {fit.id}
    with sessions() as session:
        for row in session.scalars(
            select(DealAttributionRow).where(DealAttributionRow.model_id == "markov")
        ):
            assert row.attributed_minor + row.unattributed_minor == row.amount_minor
    effects = {c: Fraction(v) for c, v in orjson.loads(fit.results)["removal_effects"].items()}
    credits = stored_markov_credits(sessions)
    assert credits == expected_markov_credits(events, effects)
    per_deal: dict[str, int] = defaultdict(int)
    for (deal_id, _), credit in credits.items():
        per_deal[deal_id] += credit
    with sessions() as session:
        amounts = dict(
            session.execute(
                select(DealAttributionRow.deal_id, DealAttributionRow.amount_minor).where(
                    DealAttributionRow.model_id == "markov",
                    DealAttributionRow.unattributed_minor == 0,
                )
            ).all()
        )
    assert per_deal == amounts  # credits sum to the deal amount, deal by deal


Parts = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


@pytest.fixture()
def split_history() -> Parts:
    """A history in time order, cut at 60% and 85%: the first fit learns from the first part,
    the refit from the first two, and the last arrives while the refit is being applied."""
    events = history()
    one, two = int(len(events) * 0.6), int(len(events) * 0.85)
    return events[:one], events[one:two], events[two:]


def test_first_fit_does_not_wait_for_the_schedule(db_url: str) -> None:
    """Item 3: the first maintenance pass fits a model never fitted (interval: one hour)."""
    settings = Settings(_env_file=None, database_url=db_url, fit_interval_s=3600)
    sessions = make_sessionmaker(make_engine(db_url))
    events = history()
    worker = Worker(settings, sessions=sessions)
    worker._maintain()  # no decided deal yet: nothing to fit
    assert fits(sessions) == []
    apply(sessions, settings, events)
    worker._maintain()  # the next pass, long before the schedule's first tick
    for model_id in ("markov", "shapley"):
        (fit,) = fits(sessions, model_id)
        assert fit.status == "done", (fit.status, fit.error)
    check_all_from(sessions, fits(sessions)[0], events)
    worker._maintain()  # fitted now: refits wait for the schedule
    assert len(fits(sessions)) == 1


def test_stopped_refit_stays_applying_and_the_next_pass_finishes_it(
    db_url: str, split_history: Parts
) -> None:
    first, middle, last = split_history
    settings = Settings(_env_file=None, database_url=db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    apply(sessions, settings, first)
    maintain_models(sessions, settings, schedule=False, chunk=CHUNK)  # first fit, done
    apply(sessions, settings, middle)  # new won deals credited with the first fit
    (old,) = fits(sessions)
    with sessions() as session, session.begin():
        request_fit(session, "markov", now=NOW)
    chunks = 0

    def stop() -> bool:
        return chunks >= 2

    def count(done: int, total: int) -> None:
        nonlocal chunks
        chunks += 1

    maintain_models(sessions, settings, schedule=False, chunk=CHUNK, progress=count, stop=stop)
    new = fits(sessions)[-1]
    assert new.status == "applying" and new.progress_done == 2 * CHUNK
    used = markov_fit_ids(sessions)
    assert list(used.values()).count(new.id) == 2 * CHUNK
    assert set(used.values()) == {old.id, new.id}
    recomputed = apply(sessions, settings, last)  # a batch while the refit is applying
    used = markov_fit_ids(sessions)
    assert {used[d] for d in recomputed if d in used} == {new.id}  # batches use the new fit
    maintain_models(sessions, settings, schedule=False, chunk=CHUNK)
    new = fits(sessions)[-1]
    assert new.status == "done" and new.progress_done == new.progress_total == len(used)
    check_all_from(sessions, new, first + middle + last)


@pytest.fixture()
def proxied_pg() -> Iterator[tuple[sessionmaker[Session], sessionmaker[Session], Any, str]]:
    with postgres_behind_proxy() as (direct_url, via_proxy, proxy):
        direct = make_engine(direct_url)
        through = make_engine(via_proxy)
        try:
            yield make_sessionmaker(direct), make_sessionmaker(through), proxy, direct_url
        finally:
            through.dispose()
            direct.dispose()


def test_refit_cut_off_by_an_outage_resumes_and_ends_done(
    proxied_pg: tuple[sessionmaker[Session], sessionmaker[Session], Any, str],
    split_history: Parts,
) -> None:
    """Item 14: PostgreSQL goes away after two chunks of a refit's credits."""
    observer, maintenance, proxy, url = proxied_pg
    first, middle, last = split_history
    rest = middle + last
    settings = Settings(_env_file=None, database_url=url)
    apply(observer, settings, first)
    maintain_models(maintenance, settings, schedule=False, chunk=CHUNK)
    apply(observer, settings, rest)
    with observer() as session, session.begin():
        request_fit(session, "markov", now=NOW)
    chunks = 0

    def cut_after_two_chunks(done: int, total: int) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 2:
            proxy.cut()

    with pytest.raises(DBAPIError) as outage:
        maintain_models(
            maintenance, settings, schedule=False, chunk=CHUNK, progress=cut_after_two_chunks
        )
    assert is_transient(outage.value)  # the worker postpones the pass, it does not stop
    old, new = fits(observer)
    assert (old.status, new.status) == ("done", "applying")
    assert new.progress_done == 2 * CHUNK < new.progress_total
    used = markov_fit_ids(observer)
    assert list(used.values()).count(new.id) == 2 * CHUNK
    assert set(used.values()) == {old.id, new.id}
    with observer() as session:
        assert latest_fits(session)["markov"].id == old.id  # still the current snapshot
        assert fits_in_force(session)["markov"].id == new.id  # what new deals get
        sums = deal_attribution_sums(session, ["markov"], Period(date(2000, 1, 1), None))
        named = used_by_reports(session, ["markov"], sums)["markov"]
        assert named is not None and named.fit_id == old.id  # reports name only done fits
    old_effects = orjson.loads(old.results)["removal_effects"]
    assert orjson.loads(new.results)["removal_effects"] != old_effects

    proxy.restore()
    maintain_models(maintenance, settings, schedule=False, chunk=CHUNK)  # the next pass
    new = fits(observer)[-1]
    assert new.status == "done" and new.progress_done == new.progress_total == len(used)
    check_all_from(observer, new, first + rest)
