"""What the admin lists (dead letters, conflicts, audit log) share: ids, page size, next link.

Their ids are 32-bit INTEGER columns: a larger id is refused as invalid (PostgreSQL would
refuse to even compare it, a 500). Each list answers JSON or CSV and names its next page both
in its body and in a ``Link: rel="next"`` header.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from pydantic import BaseModel

from services.api.params import ReportFormat
from services.api.rendering import render

MAX_ID = 2**31 - 1
PageSize = Annotated[int, Query(ge=1, le=500, description="page size")]
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}},
    406: {"description": "neither JSON nor CSV accepted"},
}


def render_page(
    request: Request,
    body: BaseModel,
    fmt: ReportFormat,
    *,
    filename: str,
    cursor: str,
    following: int | None,
) -> Response:
    """Render one page; when ``following`` is set, link the next one (``?cursor=following``)."""
    response = render(body, fmt, filename=filename)
    if following is not None:
        url = request.url.include_query_params(**{cursor: following})
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response
