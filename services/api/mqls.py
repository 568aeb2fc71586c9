"""The MQLs the worker emitted, for pushing back to the CRM (``GET /v1/reports/mqls``).

One row per ``mqls`` row (a contact made ``mql`` by a qualification episode of its account),
with the score and grade its account had when it qualified (from ``lead_qualifications``, by
definition, account and episode). Rows are ordered by (``qualified_at``, ``event_id``), so
pages taken with ``offset`` are stable while nothing is added before them.

``since`` (inclusive) and ``until`` (exclusive) bound ``qualified_at``; each is an RFC 3339
timestamp with an offset or a ``YYYY-MM-DD`` date (its UTC midnight). ``published`` says
whether the broker acknowledged the ``mql`` event (``published_at`` set).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from services.api.errors import InvalidQuery
from services.api.formatting import rfc3339
from services.api.lead_schemas import MqlOut, MqlsOut
from services.api.params import parse_day
from services.api.selection import Page
from services.core.db.schema import LeadQualificationRow, MqlRow
from services.core.fields import Timestamp

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


def parse_moment(field: str, text: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp or a ``YYYY-MM-DD`` date (UTC midnight); empty is None."""
    if text is None or text == "":
        return None
    if _DAY.fullmatch(text):
        day = parse_day(field, text)
        return None if day is None else datetime.combine(day, time(), UTC)
    try:
        return _TIMESTAMP.validate_python(text)
    except ValidationError:
        # A "+" left unencoded in a query string arrives as a space.
        hint = "; send a '+' offset as %2B, or use Z" if " " in text else ""
        raise InvalidQuery(
            field,
            f"{text!r} is neither an RFC 3339 timestamp with an offset "
            f"(2026-03-01T12:00:00Z) nor a date (2026-03-01){hint}",
            kind="datetime_parsing",
        ) from None


def parse_window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """Parse ``since`` / ``until``; ``until`` must be later than ``since``."""
    start, end = parse_moment("query.since", since), parse_moment("query.until", until)
    if start is not None and end is not None and start >= end:
        raise InvalidQuery(
            "query.until",
            f"must be later than since ({rfc3339(start)}); since is inclusive, until exclusive",
            kind="range_error",
        )
    return start, end


def mql_list(
    session: Session, *, since: datetime | None, until: datetime | None, page: Page
) -> MqlsOut:
    """Return the MQLs qualified in [since, until), one page of them."""
    query = (
        select(MqlRow, LeadQualificationRow.score, LeadQualificationRow.grade)
        .outerjoin(
            LeadQualificationRow,
            and_(
                LeadQualificationRow.definition_id == MqlRow.definition_id,
                LeadQualificationRow.account_id == MqlRow.account_id,
                LeadQualificationRow.episode == MqlRow.episode,
            ),
        )
        .order_by(MqlRow.qualified_at, MqlRow.event_id)
        .offset(page.offset)
    )
    if since is not None:
        query = query.where(MqlRow.qualified_at >= since)
    if until is not None:
        query = query.where(MqlRow.qualified_at < until)
    if page.limit is not None:
        # One row more than asked for tells whether a next page exists without a COUNT.
        query = query.limit(page.limit + 1)
    found = session.execute(query).all()
    shown = found if page.limit is None else found[: page.limit]
    following = page.offset + len(shown) if len(found) > len(shown) else None
    rows = [
        MqlOut(
            event_id=m.event_id,
            contact_id=m.contact_id,
            account_id=m.account_id,
            definition_id=m.definition_id,
            version=m.version,
            episode=m.episode,
            qualified_at=rfc3339(m.qualified_at) or "",
            score=score,
            grade=grade,
            published=m.published_at is not None,
        )
        for m, score, grade in shown
    ]
    return MqlsOut(since=rfc3339(since), until=rfc3339(until), rows=rows, next_offset=following)
