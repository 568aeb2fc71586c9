"""Small formatting rules shared by every response body: ratios and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction


def ratio(numerator: int, denominator: int) -> float | None:
    """Return numerator/denominator rounded to 4 decimals, or None when the denominator is 0."""
    if denominator == 0:
        return None
    return float(round(Fraction(numerator, denominator), 4))


def rfc3339(moment: datetime | None) -> str | None:
    """Format a timestamp as RFC 3339 in UTC with a ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
