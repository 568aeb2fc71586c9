"""Admin writes on models: queue a fit, define or change a custom model, delete one.

Like the dead-letter retry, these go through the API's separate writable engine (see
``services.api.app``); every report keeps its read-only one. Each call is one transaction.

Decisions:
- A fit request inserts a ``requested`` ``model_fits`` row with the parameters the worker
  will use (``{"order": markov_order}`` for markov, ``{"characteristic": "conversions"}``
  for shapley); while one is still queued for the model, that one is answered instead of
  queueing another. On PostgreSQL the model's row is locked first so two concurrent requests
  queue one fit; on SQLite two racing requests may queue two, which is harmless (the worker
  performs both on the same data and the second gives the same snapshot).
- ``PUT`` stores a custom positional model: ``kind`` positional, ``params`` the validated
  model's exact weights, ordered after the built-ins (in creation order). A new model, or a
  change of weights, sets ``status`` computing with progress 0/0: the worker then credits
  every deal under it and marks it ready. A change of description alone keeps the status
  (credits do not depend on it). Until the worker is done, reports show the model's old or
  partial credits.
- ``DELETE`` removes the row, its credits and its deal attributions in one transaction. (A
  worker that is still crediting the model must notice that it is gone.)
- Every call records who did what in the audit log (``services.core.audit``), in its own
  transaction: ``model.fit`` (with the fit id, and whether it was newly queued),
  ``model.define`` (the weights, description, and whether it was created) and
  ``model.delete``.
- ``PUT`` and ``DELETE`` change what reports show (the model list, a model's credits), so
  they give the projection a new version in their transaction, like every other writer: no
  report cached before them is served after them (``services.api.cache``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.api import catalogue, snapshots
from services.api.errors import BuiltinModel, InvalidQuery, ModelNotFound
from services.api.formatting import rfc3339
from services.api.schemas import FitRequestOut, ModelDefinitionIn, ModelDetailOut
from services.core.audit import record_audit
from services.core.auth import Principal
from services.core.db.rollups import retract_model
from services.core.db.schema import AttributionModelRow, ModelFitRow
from services.core.db.unit_of_work import MODELS_IN_FORCE, Lock, unit_of_work
from services.domain import InvalidModelDefinition, make_positional_model
from services.domain.datadriven import DATA_DRIVEN

MODEL_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
COMPUTING = "computing"


def _fit_params(model_id: str, markov_order: int) -> dict[str, object]:
    if model_id == "markov":
        return {"order": markov_order}
    return {"characteristic": "conversions"}


def request_fit(
    sessions: sessionmaker[Session],
    model_id: str,
    *,
    principal: Principal,
    markov_order: int,
    now: datetime,
) -> FitRequestOut:
    """Queue a fit of a data-driven model, or return the one already queued."""
    if model_id not in DATA_DRIVEN:
        raise InvalidQuery(
            "path.model_id",
            f"{model_id!r} has no fit: only the data-driven models "
            f"({', '.join(DATA_DRIVEN)}) are fitted",
            kind="not_fittable",
        )
    with sessions.begin() as session:
        session.execute(
            select(AttributionModelRow.model_id)
            .where(AttributionModelRow.model_id == model_id)
            .with_for_update()
        )
        row = snapshots.pending(session, model_id)
        queued = row is None
        if row is None:
            row = ModelFitRow(
                model_id=model_id,
                status=snapshots.REQUESTED,
                requested_at=now,
                params=json.dumps(_fit_params(model_id, markov_order)),
                inputs="{}",
                results="{}",
            )
            session.add(row)
            session.flush()
        detail = {"fit_id": row.id, "queued": queued}
        record_audit(session, principal, "model.fit", f"model:{model_id}", detail, at=now)
        return FitRequestOut(
            fit_id=row.id,
            model_id=model_id,
            status=snapshots.REQUESTED,
            requested_at=rfc3339(row.requested_at),
        )


def _check_changeable(model_id: str) -> None:
    if model_id in catalogue.BUILTIN_IDS:
        raise BuiltinModel(model_id)


def define_model(
    sessions: sessionmaker[Session], model_id: str, body: ModelDefinitionIn, *, principal: Principal
) -> tuple[ModelDetailOut, bool]:
    """Create or replace a custom positional model; return it and whether it was created."""
    _check_changeable(model_id)
    if not MODEL_ID.fullmatch(model_id):
        raise InvalidQuery(
            "path.model_id",
            f"{model_id!r} is not a model id: 1 to 63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit",
            kind="string_pattern_mismatch",
        )
    try:
        model = make_positional_model(model_id, body.weights, description=body.description)
    except InvalidModelDefinition as exc:
        raise InvalidQuery("body.weights", str(exc), kind="invalid_model") from None
    params, created = model.params(), False
    for attempt in (1, 2):
        try:
            # Exclusive: no deal is being recomputed under the models as they were.
            with unit_of_work(sessions, Lock(MODELS_IN_FORCE)) as session:
                created = _upsert(session, model_id, params, body.description)
                detail = {"weights": params, "description": body.description, "created": created}
                record_audit(session, principal, "model.define", f"model:{model_id}", detail)
            break
        except IntegrityError:
            # A concurrent PUT created the same id first: the second attempt updates it.
            if attempt == 2:
                raise
    with sessions() as session:
        return catalogue.model_detail(session, model_id), created


def _upsert(session: Session, model_id: str, params: dict[str, str], description: str) -> bool:
    """Write the custom model's row; return True when it was created."""
    row = session.get(AttributionModelRow, model_id, with_for_update=True)
    if row is not None and row.builtin:
        raise BuiltinModel(model_id)
    text = json.dumps(params)
    if row is None:
        last = session.scalar(select(func.max(AttributionModelRow.position)))
        session.add(
            AttributionModelRow(
                model_id=model_id,
                kind="positional",
                params=text,
                description=description,
                builtin=False,
                position=max(catalogue.BUILTIN_COUNT, (last if last is not None else -1) + 1),
                status=COMPUTING,
                progress_done=0,
                progress_total=0,
            )
        )
        session.flush()
        return True
    if row.kind != "positional" or json.loads(row.params or "{}") != params:
        row.kind, row.params = "positional", text
        row.status, row.progress_done, row.progress_total = COMPUTING, 0, 0
    row.description = description
    return False


def delete_model(sessions: sessionmaker[Session], model_id: str, *, principal: Principal) -> None:
    """Delete a custom model with its credits and deal attributions, in one transaction."""
    _check_changeable(model_id)
    with unit_of_work(sessions, Lock(MODELS_IN_FORCE)) as session:
        row = catalogue.find(session, model_id)
        if row is None:
            raise ModelNotFound(model_id)
        if row.builtin:
            raise BuiltinModel(model_id)
        retract_model(session, model_id)  # its credits and attributions, off the rollups too
        detail = {"weights": json.loads(row.params or "{}"), "description": row.description}
        session.delete(row)
        record_audit(session, principal, "model.delete", f"model:{model_id}", detail)
