"""``/v1/lead-definitions``: the agreed definitions of a sales-ready lead (contract §7).

Reading needs the ``read`` scope; ``PUT`` needs ``admin`` and writes through the API's
separate writable engine (``services.api.lead_definitions``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from services.api.deps import AdminPrincipal, AdminSessionsDep, ReadPrincipal, SessionDep
from services.api.lead_definitions import DEFINITION_ID, define, find, list_all
from services.api.lead_schemas import LeadDefinitionIn, LeadDefinitionOut, LeadDefinitionsOut

router = APIRouter(prefix="/v1/lead-definitions", tags=["lead definitions"])

# Documentation only: the route checks it itself, answering 422 in its own words.
DefinitionId = Annotated[str, Path(json_schema_extra={"pattern": f"^{DEFINITION_ID.pattern}$"})]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown definition"}}


@router.get("")
def index(_: ReadPrincipal, session: SessionDep) -> LeadDefinitionsOut:
    """Every lead definition (by id) with all its versions, and which one is active."""
    return list_all(session)


@router.get("/{definition_id}", responses=_NOT_FOUND)
def show(definition_id: str, _: ReadPrincipal, session: SessionDep) -> LeadDefinitionOut:
    """One lead definition: whether it is active, its latest version and every version."""
    return find(session, definition_id)


@router.put(
    "/{definition_id}",
    responses={
        201: {"description": "a new version was stored", "model": LeadDefinitionOut},
        422: {"description": "bad definition id or rule"},
    },
)
def put(
    definition_id: DefinitionId,
    body: LeadDefinitionIn,
    response: Response,
    principal: AdminPrincipal,
    sessions: AdminSessionsDep,
) -> LeadDefinitionOut:
    """Store a new version of a lead definition (201), or nothing if its rule is unchanged (200).

    The version is the previous one + 1 (1 for a new definition), kept with the key's name
    and the time. A rule equal to the latest version's stores nothing (its note is not kept).
    ``active: true`` makes this the only active definition; ``active: false`` leaves none
    active if this one was; absent leaves the active definition as it is. Every call is in
    the audit log as ``lead_definition.define``.
    """
    out, created = define(sessions, definition_id, body, principal=principal, now=datetime.now(UTC))
    response.status_code = 201 if created else 200
    return out
