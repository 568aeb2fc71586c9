"""Data-driven models through the database: paths from decided deals, versioned snapshots,
credits per snapshot, the schedule, custom models computed in the background."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import orjson
import pytest
from sqlalchemy import func, select

from services.attribution.fitting import collect_paths, due_models, request_fit, run_requested_fits
from services.attribution.maintenance import compute_custom_models
from services.attribution.projector import apply_events
from services.attribution.registry import sync_builtin_models
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.db.schema import (
    AttributionModelRow,
    CreditRow,
    DealAttributionRow,
    ModelFitRow,
)
from services.core.events import EVENT_LIST_ADAPTER
from services.core.settings import Settings
from services.domain.datadriven import channel_weights
from services.domain.markov import fit_markov
from services.domain.paths import split_by_channel
from services.simulate import generate
from tests.e2e.test_pipeline import START
from tests.support.processes import ROOT, service_env

pytestmark = pytest.mark.integration
NOW = datetime(2026, 9, 1, tzinfo=UTC)


@pytest.fixture()
def loaded(db_url: str) -> tuple[Settings, object]:
    settings = Settings(_env_file=None, database_url=db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    events = EVENT_LIST_ADAPTER.validate_python(generate(seed=8, deals=80, start=START, days=120))
    with sessions() as session, session.begin():
        sync_builtin_models(session, settings)
        apply_events(session, events, settings=settings, now=NOW)
    return settings, sessions


def test_fit_snapshots_and_credits(loaded: tuple[Settings, object]) -> None:
    settings, sessions = loaded
    with sessions() as session, session.begin():  # type: ignore[operator]
        assert set(due_models(session, settings, now=NOW)) == {"markov", "shapley"}
        markov_id = request_fit(session, "markov", now=NOW)
        assert request_fit(session, "markov", now=NOW) == markov_id  # not queued twice
        request_fit(session, "shapley", now=NOW)
    assert len(run_requested_fits(sessions, settings)) == 2  # type: ignore[arg-type]
    with sessions() as session:  # type: ignore[operator]
        paths, inputs = collect_paths(session, settings)
        fit = session.get(ModelFitRow, markov_id)
        assert fit is not None and fit.status == "done"
        assert orjson.loads(fit.inputs) == inputs
        assert inputs["won_deals"] > 0 and inputs["lost_deals"] > 0
        effects = channel_weights("markov", orjson.loads(fit.results))
        assert effects == dict(fit_markov(paths).removal_effects)
        # Every won deal's markov credits: same journey as linear, split by removal effect.
        summaries = session.scalars(
            select(DealAttributionRow).where(DealAttributionRow.model_id == "markov")
        ).all()
        assert summaries and all(s.fit_id == markov_id for s in summaries)
        lines: dict[tuple[str, str], list[CreditRow]] = defaultdict(list)
        for row in session.scalars(
            select(CreditRow)
            .where(CreditRow.model_id.in_(["markov", "linear"]))
            .order_by(CreditRow.position)
        ):
            lines[(row.model_id, row.deal_id)].append(row)
        for summary in summaries:
            markov = lines[("markov", summary.deal_id)]
            linear = lines[("linear", summary.deal_id)]
            assert [r.touch_event_id for r in markov] == [r.touch_event_id for r in linear]
            assert sum(r.credit_minor for r in markov) == summary.attributed_minor
            if markov:
                assert summary.attributed_minor == summary.amount_minor
        # Nothing new decided: the schedule has nothing to do.
        assert due_models(session, settings, now=NOW + timedelta(hours=1)) == []


def test_markov_weights_follow_removal_effects() -> None:
    effects = {"email": Fraction(1, 2), "ads": Fraction(1, 4)}
    weights = split_by_channel(["ads", "email", "ads"], effects)
    assert weights == [Fraction(1, 6), Fraction(2, 3), Fraction(1, 6)]


def test_custom_model_is_computed_in_the_background(loaded: tuple[Settings, object]) -> None:
    settings, sessions = loaded
    with sessions() as session, session.begin():  # type: ignore[operator]
        session.add(
            AttributionModelRow(
                model_id="first_heavy",
                kind="positional",
                params=orjson.dumps({"first": "0.7", "last": "0.3"}).decode(),
                description="test",
                builtin=False,
                position=99,
                status="computing",
                progress_done=0,
                progress_total=0,
            )
        )
    assert compute_custom_models(sessions, settings) == ["first_heavy"]  # type: ignore[arg-type]
    with sessions() as session:  # type: ignore[operator]
        row = session.get(AttributionModelRow, "first_heavy")
        assert row is not None and row.status == "ready"
        assert row.progress_done == row.progress_total > 0
        custom = session.scalar(
            select(func.sum(DealAttributionRow.attributed_minor)).where(
                DealAttributionRow.model_id == "first_heavy"
            )
        )
        linear = session.scalar(
            select(func.sum(DealAttributionRow.attributed_minor)).where(
                DealAttributionRow.model_id == "linear"
            )
        )
        assert custom == linear and custom


def test_fit_command(loaded: tuple[Settings, object]) -> None:
    settings, _ = loaded
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "fit", "--model", "markov"],
        env=service_env({"CLOSEDLOOP_DATABASE_URL": settings.database_url}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "removal effect" in done.stdout and "snapshot" in done.stdout
