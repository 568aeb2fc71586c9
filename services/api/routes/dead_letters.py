"""``/v1/admin/dead-letters``: records the worker could not use, and their re-publication.

Both routes need a key with the ``admin`` scope. The list is a read like any report (JSON or
CSV); the retry is the read API's only write (see ``services.api.dead_letters``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from services.api.dead_letters import list_dead_letters, retry_dead_letter
from services.api.deps import (
    AdminPrincipal,
    AdminSessionsDep,
    FormatDep,
    PublisherDep,
    SessionDep,
)
from services.api.paging import LIST_RESPONSES, MAX_ID, PageSize, render_page
from services.api.schemas import DeadLetterRetryOut, DeadLettersOut

router = APIRouter(prefix="/v1/admin/dead-letters", tags=["admin"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "no or unknown API key"},
    403: {"description": "the key lacks the admin scope"},
}


@router.get(
    "",
    response_model=DeadLettersOut,
    responses={
        **_AUTH,
        **LIST_RESPONSES,
    },
)
def index(
    request: Request,
    _: AdminPrincipal,
    fmt: FormatDep,
    session: SessionDep,
    limit: PageSize = 100,
    after_id: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="the previous page's next_after_id")
    ] = None,
    include_retried: Annotated[
        bool, Query(description="also list dead letters already re-published")
    ] = False,
) -> Response:
    """Dead letters in id order, each with its coordinates, error and raw bytes.

    ``raw`` is the bytes as UTF-8 text (null when they are not UTF-8), ``raw_base64`` the bytes
    exactly. ``next_after_id`` (also a ``Link: rel="next"`` header) is null on the last page.
    """
    body = list_dead_letters(
        session, limit=limit, after_id=after_id, include_retried=include_retried
    )
    return render_page(
        request,
        body,
        fmt,
        filename="dead-letters.csv",
        cursor="after_id",
        following=body.next_after_id,
    )


@router.post(
    "/{dead_letter_id}/retry",
    status_code=202,
    responses={
        **_AUTH,
        404: {"description": "unknown dead letter"},
        409: {"description": "already re-published (use force=true)"},
        422: {"description": "still invalid under the current event schema"},
        503: {"description": "the broker did not acknowledge; retry later"},
    },
)
def retry(
    principal: AdminPrincipal,
    sessions: AdminSessionsDep,
    publisher: PublisherDep,
    dead_letter_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    force: Annotated[bool, Query(description="re-publish even if already retried")] = False,
) -> DeadLetterRetryOut:
    """Re-validate a dead letter with the current schema and re-publish it to the events topic.

    Answers 202 once the broker acknowledged the event, and marks the dead letter retried.
    Retrying twice is harmless: the worker ignores an ``event_id`` it has already stored.
    """
    return retry_dead_letter(sessions, publisher, dead_letter_id, principal=principal, force=force)
