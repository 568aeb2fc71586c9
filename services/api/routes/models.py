"""``/v1/models``: the attribution models and their parameters, in display order."""

from __future__ import annotations

import json

from fastapi import APIRouter

from services.api import queries
from services.api.deps import ReadPrincipal, SessionDep
from services.api.schemas import ModelOut, ModelsOut

router = APIRouter(prefix="/v1", tags=["models"])


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
