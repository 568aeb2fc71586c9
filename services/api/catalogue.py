"""One attribution model as ``GET /v1/models/{id}`` shows it: definition, state, snapshot.

Decisions:
- Built-in models are the catalogue of contract §3 (the positional built-ins, ``time_decay``,
  ``markov``, ``shapley``: ``BUILTIN_IDS``) plus any row the worker marked ``builtin``. Users
  can neither redefine nor delete them.
- ``status`` is the row's (``ready``, or ``computing`` while the worker credits every deal
  under a new or changed custom model); ``progress`` ({done, total} deals) is shown for custom
  models only, built-ins being maintained with every batch.
- For markov and shapley: ``snapshot`` is the latest done fit (``services.api.snapshots``),
  ``pending_fit`` the oldest fit still queued, ``failed_fit`` the latest failed fit newer than
  the snapshot (so a failure is visible until a later fit succeeds). All are null elsewhere.
"""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from services.api import snapshots
from services.api.errors import ModelNotFound
from services.api.schemas import ModelDetailOut, ProgressOut
from services.core.db.schema import AttributionModelRow
from services.domain import builtin_models
from services.domain.datadriven import DATA_DRIVEN

BUILTIN_IDS = frozenset(m.model_id for m in builtin_models()) | frozenset(DATA_DRIVEN)
BUILTIN_COUNT = len(builtin_models()) + len(DATA_DRIVEN)


def find(session: Session, model_id: str) -> AttributionModelRow | None:
    """Return the model's row, or None (an id PostgreSQL cannot even compare is unknown)."""
    if "\x00" in model_id:
        return None
    return session.get(AttributionModelRow, model_id)


def model_detail(session: Session, model_id: str) -> ModelDetailOut:
    """Return one model with its state and, for a data-driven model, its snapshot."""
    row = find(session, model_id)
    if row is None:
        raise ModelNotFound(model_id)
    snapshot = pending = failed = None
    if model_id in DATA_DRIVEN:
        done = snapshots.latest_done(session, model_id)
        snapshot = None if done is None else snapshots.snapshot(done)
        queued = snapshots.pending(session, model_id)
        pending = None if queued is None else snapshots.fit_ref(queued)
        failed = snapshots.failed_since(session, model_id, 0 if done is None else done.id)
    return ModelDetailOut(
        id=row.model_id,
        kind=row.kind,
        params=json.loads(row.params or "{}"),
        description=row.description,
        builtin=row.builtin,
        status=row.status,
        progress=None
        if row.builtin
        else ProgressOut(done=row.progress_done, total=row.progress_total),
        snapshot=snapshot,
        pending_fit=pending,
        failed_fit=failed,
    )
