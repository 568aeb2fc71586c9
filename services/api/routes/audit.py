"""``/v1/admin/audit``: who did which admin action, newest first (scope ``admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.api.audit import list_audit
from services.api.deps import AdminPrincipal, FormatDep, SessionDep
from services.api.paging import LIST_RESPONSES, MAX_ID, PageSize, render_page
from services.api.schemas import AuditLogOut

router = APIRouter(prefix="/v1/admin/audit", tags=["admin"])


@router.get(
    "",
    response_model=AuditLogOut,
    responses=LIST_RESPONSES,
)
def index(
    request: Request,
    _: AdminPrincipal,
    fmt: FormatDep,
    session: SessionDep,
    limit: PageSize = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="the previous page's next_before_id")
    ] = None,
    action: Annotated[
        str | None,
        # A pattern, not just a length: text PostgreSQL cannot even compare (NUL) is refused.
        Query(pattern=r"^[a-z0-9_.-]{1,100}$", description="only this action, e.g. key.revoke"),
    ] = None,
) -> Response:
    """Admin actions, newest first: when, by which key (or ``cli``), what, on what, detail.

    Recorded: ``key.create`` and ``key.revoke`` (CLI), ``model.define``, ``model.delete`` and
    ``model.fit`` (API or CLI), ``dead_letter.retry``, ``projection.recompute`` (CLI),
    ``lead_definition.define``.
    ``next_before_id`` (also a ``Link: rel="next"`` header) is null on the last page.
    """
    body = list_audit(session, limit=limit, before_id=before_id, action=action)
    return render_page(
        request,
        body,
        fmt,
        filename="audit.csv",
        cursor="before_id",
        following=body.next_before_id,
    )
