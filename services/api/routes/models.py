"""``/v1/models``: the attribution models, one model's snapshot, and their admin.

Reading needs the ``read`` scope; fitting, defining and deleting need ``admin`` (contract §6:
model definitions) and write through the API's separate writable engine
(``services.api.definitions``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from services.api import queries
from services.api.catalogue import model_detail
from services.api.definitions import MODEL_ID, define_model, delete_model, request_fit
from services.api.deps import (
    AdminPrincipal,
    AdminSessionsDep,
    ReadPrincipal,
    SessionDep,
    SettingsDep,
)
from services.api.schemas import (
    FitRequestOut,
    ModelDefinitionIn,
    ModelDetailOut,
    ModelOut,
    ModelsOut,
)
from services.domain.datadriven import DATA_DRIVEN

router = APIRouter(prefix="/v1", tags=["models"])

# Documentation only: the routes check these themselves, answering 422 (or 409) in their words.
FittableId = Annotated[str, Path(json_schema_extra={"enum": list(DATA_DRIVEN)})]
CustomModelId = Annotated[str, Path(json_schema_extra={"pattern": f"^{MODEL_ID.pattern}$"})]

_ADMIN: dict[int | str, dict[str, Any]] = {
    401: {"description": "no or unknown API key"},
    403: {"description": "the key lacks the admin scope"},
}


@router.get("/models")
def list_models(_: ReadPrincipal, session: SessionDep) -> ModelsOut:
    """List every attribution model (built-in and custom) with its kind and parameters."""
    return ModelsOut(
        models=[
            ModelOut(
                id=m.model_id,
                kind=m.kind,
                params=json.loads(m.params or "{}"),
                description=m.description,
                builtin=m.builtin,
            )
            for m in queries.models(session)
        ]
    )


@router.get("/models/{model_id}", responses={404: {"description": "unknown model"}})
def get_model(model_id: str, _: ReadPrincipal, session: SessionDep) -> ModelDetailOut:
    """One model: definition, status and (custom models) progress of its background credits.

    For ``markov`` and ``shapley``: ``snapshot`` is the latest done fit with its inputs,
    parameters, the removal-effect or Shapley table (each value with its normalised
    ``share``), and for markov the conversion probability and the transition summary (first
    200 rows); ``pending_fit`` a queued fit, ``failed_fit`` a failure newer than the snapshot.
    """
    return model_detail(session, model_id)


@router.post(
    "/models/{model_id}/fit",
    status_code=202,
    responses={**_ADMIN, 422: {"description": "not a data-driven model"}},
)
def fit(
    model_id: FittableId,
    principal: AdminPrincipal,
    sessions: AdminSessionsDep,
    settings: SettingsDep,
) -> FitRequestOut:
    """Queue a refit of ``markov`` or ``shapley`` on all decided deals (202).

    The worker performs it, then re-credits every deal with the new snapshot; follow it at
    ``GET /v1/models/{model_id}``. While a fit is queued, asking again answers that one.
    """
    return request_fit(
        sessions,
        model_id,
        principal=principal,
        markov_order=settings.markov_order,
        now=datetime.now(UTC),
    )


@router.put(
    "/models/{model_id}",
    responses={
        **_ADMIN,
        201: {"description": "created", "model": ModelDetailOut},
        409: {"description": "a built-in model"},
        422: {"description": "bad model id or weights"},
    },
)
def put_model(
    model_id: CustomModelId,
    body: ModelDefinitionIn,
    response: Response,
    principal: AdminPrincipal,
    sessions: AdminSessionsDep,
) -> ModelDetailOut:
    """Define (201) or redefine (200) a custom positional model by its role weights.

    ``weights`` maps roles (``first``, ``last``, ``lead_creation``, ``opportunity_creation``,
    ``middle``) to decimal strings; they are normalised per journey as in contract §3. Its
    credits are then computed for every deal in the background: ``status`` is computing,
    with ``progress``, until it is ready.
    """
    detail, created = define_model(sessions, model_id, body, principal=principal)
    response.status_code = 201 if created else 200
    return detail


@router.delete(
    "/models/{model_id}",
    status_code=204,
    responses={
        **_ADMIN,
        404: {"description": "unknown model"},
        409: {"description": "a built-in model"},
    },
)
def remove_model(model_id: str, principal: AdminPrincipal, sessions: AdminSessionsDep) -> Response:
    """Delete a custom model together with its credits (204)."""
    delete_model(sessions, model_id, principal=principal)
    return Response(status_code=204)
