"""Model upkeep the worker does between batches: fits (first, scheduled, requested, being
applied; the grade's with them), custom models, the pipeline snapshot, rollup compaction and
lead qualification. Jobs that one worker should do at a time take a try-lock (the others
skip them: ``unit_of_work.try_take``).

Each step is idempotent and commits on its own; the worker calls ``maintain_models`` every few
seconds, so a fit requested through the API, the first fit of a model once decided deals exist,
or a custom model defined with ``PUT``, is computed within seconds without a separate process,
and a fit whose credits an outage or a stop interrupted is finished at the next pass.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.attribution.fitting import due_models, request_fit, run_requested_fits
from services.attribution.grading import fit_grade_snapshot, grade_due
from services.attribution.pipeline import compute_pipeline, snapshot_is_current
from services.attribution.qualifying import publish_mqls, qualify_accounts
from services.attribution.rebuild import CHUNK, Stop
from services.attribution.recompute import Progress, UnknownModel, recompute
from services.core.db.rollups import compact_rollups, retract_model
from services.core.db.schema import AttributionModelRow
from services.core.db.unit_of_work import nothing_changed, try_take, unit_of_work
from services.core.settings import Settings

# Jobs any worker may run but one at a time (``try_take``: the others skip them).
FIT_REQUESTS = "jobs:fit-requests"
GRADE_FIT = "jobs:grade-fit"
PIPELINE_JOB = "jobs:pipeline"
LEAD_QUALIFICATION = "jobs:lead-qualification"
ROLLUP_COMPACTION = "jobs:rollup-compaction"


def maintain_models(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    schedule: bool,
    progress: Progress | None = None,
    stop: Stop | None = None,
    chunk: int = CHUNK,
) -> None:
    """Queue due fits (first fits always, refits on ``schedule``), finish and run fits, then
    compute new custom models. ``stop`` ends a fit's credits between chunks (resumed later).
    """
    now = datetime.now(UTC)
    with unit_of_work(sessions) as session:
        due = (
            due_models(session, settings, now=now, schedule=schedule)
            if try_take(session, FIT_REQUESTS)  # else another worker is queueing them
            else []
        )
        for model_id in due:
            request_fit(session, model_id, now=now)
        if not due:
            nothing_changed(session)
    run_requested_fits(sessions, settings, chunk=chunk, progress=progress, stop=stop)
    with unit_of_work(sessions) as session:
        if try_take(session, GRADE_FIT) and grade_due(
            session, settings, now=now, schedule=schedule
        ):
            fit_grade_snapshot(session, settings, now=now)
        else:
            nothing_changed(session)
    if stop is None or not stop():
        compute_custom_models(sessions, settings)


def compute_custom_models(sessions: sessionmaker[Session], settings: Settings) -> list[str]:
    """Compute the credits of every custom model marked computing, recording progress."""
    with sessions() as session:
        rows = session.execute(
            select(AttributionModelRow.model_id, AttributionModelRow.params).where(
                AttributionModelRow.builtin.is_(False),
                AttributionModelRow.status == "computing",
            )
        ).all()
        pending = {model_id: params for model_id, params in rows}
    for model_id, params in pending.items():

        def record(done: int, total: int, model_id: str = model_id) -> None:
            with unit_of_work(sessions) as session:
                row = session.get(AttributionModelRow, model_id)
                if row is None:
                    nothing_changed(session)
                else:
                    row.progress_done, row.progress_total = done, total

        try:
            recompute(sessions, settings, model_ids=[model_id], progress=record)
        except UnknownModel:  # deleted meanwhile
            continue
        with unit_of_work(sessions) as session:
            row = session.get(AttributionModelRow, model_id)
            if row is None:  # deleted while we computed: take back what we wrote
                retract_model(session, model_id)
            elif row.status == "computing" and row.params == params:
                row.status = "ready"  # else redefined meanwhile: the next call computes again
    return list(pending)


def compact(sessions: sessionmaker[Session], *, full: bool = False) -> int:
    """Compact the report rollups' deltas (one worker at a time); return the rows removed.

    The sums do not change, so neither does the projection version.
    """
    with unit_of_work(sessions) as session:
        nothing_changed(session)
        if not try_take(session, ROLLUP_COMPACTION):
            return 0
        return compact_rollups(session, full=full)


def refresh_pipeline(sessions: sessionmaker[Session], settings: Settings) -> bool:
    """Recompute the pipeline snapshot unless it is current with the projection; return
    whether it computed one.

    A snapshot that a batch raced is stored as not current, so the next pass computes again.
    One snapshot is one transaction (``compute_pipeline``).
    """
    with sessions() as session:
        if snapshot_is_current(session):
            return False
    with unit_of_work(sessions) as session:
        if not try_take(session, PIPELINE_JOB):  # another worker is computing it
            nothing_changed(session)
            return False
        compute_pipeline(session, settings, datetime.now(UTC))
        nothing_changed(session)  # the snapshot bumped the version itself, and stored it
    return True


def maintain_leads(
    sessions: sessionmaker[Session],
    settings: Settings,
    send_all: Callable[[list[tuple[bytes, bytes]]], None],
) -> int:
    """Qualify open accounts under the active lead definition, then publish pending MQLs.

    Two transactions: the episodes and their MQL rows commit together, then the rows not yet
    acknowledged are published and marked (``services.attribution.qualifying``). Returns the
    number of MQL events published.
    """
    now = datetime.now(UTC)
    with unit_of_work(sessions) as session:
        nothing_changed(session)  # episodes and MQL rows: no report is cached over them
        if try_take(session, LEAD_QUALIFICATION):  # else another worker is qualifying
            qualify_accounts(session, settings, now=now)
    with unit_of_work(sessions) as session:
        nothing_changed(session)
        if not try_take(session, LEAD_QUALIFICATION):
            return 0
        return publish_mqls(session, send_all, now=now)
