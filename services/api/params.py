"""Parsing of the reports' query parameters: date ranges, model lists, ``Accept``.

Pure functions (no database, no HTTP objects): they return values or raise ``InvalidQuery`` /
``NotAcceptable`` naming the offending field.

Decisions where the contract is silent:
- ``from`` and ``to`` are strict ``YYYY-MM-DD`` calendar dates read as UTC midnights; an empty
  value is the same as an absent one (unbounded); ``from`` must be before ``to``.
- ``models=a,b`` keeps the caller's order, drops duplicates and empty items.
- ``Accept``: JSON unless the header prefers ``text/csv``; ``*/*``, ``application/*`` or no
  header mean JSON; a header naming neither → 406. Ties go to the more specific range, then JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum

from services.api.errors import InvalidQuery, NotAcceptable

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Period:
    """A half-open range of UTC days ``[start, end)``; ``None`` is unbounded."""

    start: date | None = None
    end: date | None = None

    @property
    def start_at(self) -> datetime | None:
        """The inclusive lower bound as a UTC timestamp."""
        return None if self.start is None else datetime.combine(self.start, time(), UTC)

    @property
    def end_at(self) -> datetime | None:
        """The exclusive upper bound as a UTC timestamp."""
        return None if self.end is None else datetime.combine(self.end, time(), UTC)

    def echo(self) -> tuple[str | None, str | None]:
        """Return ``(from, to)`` as the report echoes them."""
        return (
            None if self.start is None else self.start.isoformat(),
            None if self.end is None else self.end.isoformat(),
        )


def parse_day(field: str, text: str | None) -> date | None:
    """Parse a strict ``YYYY-MM-DD`` date; empty or absent is ``None``."""
    if text is None or text == "":
        return None
    if not _DAY.fullmatch(text):
        raise InvalidQuery(field, f"{text!r} is not a date in YYYY-MM-DD form", kind="date_parsing")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(
            field, f"{text!r} is not a valid calendar date", kind="date_parsing"
        ) from None


def parse_period(start: str | None, end: str | None) -> Period:
    """Parse the ``from`` / ``to`` query parameters into a Period."""
    period = Period(parse_day("query.from", start), parse_day("query.to", end))
    if period.start is not None and period.end is not None and period.start >= period.end:
        raise InvalidQuery(
            "query.to",
            f"must be later than from ({period.start.isoformat()}); "
            "from is inclusive and to exclusive",
            kind="range_error",
        )
    return period


def parse_model_list(text: str | None) -> list[str]:
    """Split ``a,b,c`` into model ids in order, without duplicates or empty items."""
    ids = [part.strip() for part in (text or "").split(",")]
    return list(dict.fromkeys(i for i in ids if i))


class ReportFormat(StrEnum):
    JSON = "application/json"
    CSV = "text/csv"


# media range -> (format, specificity)
_RANGES: dict[str, tuple[ReportFormat, int]] = {
    "application/json": (ReportFormat.JSON, 2),
    "application/*": (ReportFormat.JSON, 1),
    "text/csv": (ReportFormat.CSV, 2),
    "text/*": (ReportFormat.CSV, 1),
}


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def negotiate(accept: str | None) -> ReportFormat:
    """Choose JSON or CSV for an ``Accept`` header, or raise NotAcceptable."""
    if accept is None or not accept.strip():
        return ReportFormat.JSON
    # per format: (specificity of the best-matching range, its quality)
    best: dict[ReportFormat, tuple[int, float]] = {}
    for item in accept.split(","):
        media, *params = item.split(";")
        media = media.strip().lower()
        matches = (
            [(f, 0) for f in ReportFormat]
            if media == "*/*"
            else [_RANGES[media]]
            if media in _RANGES
            else []
        )
        q = _quality(params)
        for fmt, specificity in matches:
            if fmt not in best or specificity > best[fmt][0]:
                best[fmt] = (specificity, q)
    ranked = sorted(
        ((q, spec, fmt is ReportFormat.JSON, fmt) for fmt, (spec, q) in best.items() if q > 0),
        reverse=True,
    )
    if not ranked:
        raise NotAcceptable([f.value for f in ReportFormat])
    return ranked[0][3]
