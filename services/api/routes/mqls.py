"""``/v1/reports/mqls``: the MQLs the worker emitted, to push back to the CRM (JSON or CSV)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.api.deps import FormatDep, PageDep, ReadPrincipal, SessionDep
from services.api.lead_schemas import MqlsOut
from services.api.mqls import mql_list, parse_window
from services.api.paging import render_page
from services.api.rendering import csv_responses

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_MOMENT = "an RFC 3339 timestamp with an offset, or a YYYY-MM-DD date (its UTC midnight)"
SinceQuery = Annotated[str | None, Query(description=f"qualified at or after: {_MOMENT}")]
UntilQuery = Annotated[str | None, Query(description=f"qualified before: {_MOMENT}")]


@router.get("/mqls", response_model=MqlsOut, responses=csv_responses("bad since, until or page"))
def mqls(
    request: Request,
    _: ReadPrincipal,
    fmt: FormatDep,
    session: SessionDep,
    page: PageDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Response:
    """Contacts made ``mql`` by a lead definition, by ``qualified_at`` then ``event_id``.

    Each row: the emitted event, contact, account, definition version and qualification
    episode, when the account qualified with its score and grade then, and whether the
    event was published. ``next_offset`` (also a ``Link: rel="next"`` header) is null on
    the last page.
    """
    start, end = parse_window(since, until)
    body = mql_list(session, since=start, until=end, page=page)
    return render_page(
        request, body, fmt, filename="mqls.csv", cursor="offset", following=body.next_offset
    )
