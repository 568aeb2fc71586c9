"""``/v1/admin/conflicts``: later copies of stored events whose content differs (contract §1).

Needs a key with the ``admin`` scope. A read like any report, JSON or CSV (one row per
conflicting copy, the payloads as JSON text), paged by id like the dead letters.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.api.conflicts import list_conflicts
from services.api.deps import AdminPrincipal, FormatDep, SessionDep
from services.api.paging import LIST_RESPONSES, MAX_ID, PageSize, render_page
from services.api.schemas import ConflictsOut

router = APIRouter(prefix="/v1/admin/conflicts", tags=["admin"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no or unknown API key"},
    403: {"description": "the key lacks the admin scope"},
    **LIST_RESPONSES,
}


@router.get("", response_model=ConflictsOut, responses=_RESPONSES)
def index(
    request: Request,
    _: AdminPrincipal,
    fmt: FormatDep,
    session: SessionDep,
    limit: PageSize = 100,
    after_id: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="the previous page's next_after_id")
    ] = None,
    event_id: Annotated[
        str | None,
        # No stored event id holds NUL (PostgreSQL text cannot), and asking would fail.
        Query(pattern=r"^[^\x00]{1,200}$", description="only this event's copies"),
    ] = None,
) -> Response:
    """Conflicting copies in id order: both payloads, where and when they arrived, how often.

    The stored copy is the one every report uses; the conflicting one was never applied.
    ``next_after_id`` (also a ``Link: rel="next"`` header) is null on the last page.
    """
    body = list_conflicts(session, limit=limit, after_id=after_id, event_id=event_id)
    return render_page(
        request,
        body,
        fmt,
        filename="conflicts.csv",
        cursor="after_id",
        following=body.next_after_id,
    )
