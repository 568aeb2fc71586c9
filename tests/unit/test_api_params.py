"""Pure pieces of the read API: query parsing, content negotiation, CSV writing, ratios."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest

from services.api.errors import InvalidQuery, NotAcceptable
from services.api.params import ReportFormat, negotiate, parse_model_list, parse_period
from services.api.rendering import write_csv
from services.api.reports import ratio, rfc3339


def test_period_is_half_open_utc_days() -> None:
    period = parse_period("2024-01-01", "2024-02-01")
    assert (period.start, period.end) == (date(2024, 1, 1), date(2024, 2, 1))
    assert period.start_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert period.end_at == datetime(2024, 2, 1, tzinfo=UTC)
    assert period.echo() == ("2024-01-01", "2024-02-01")
    assert parse_period(None, "").echo() == (None, None)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("2024-1-01", None, "query.from"),
        ("2024-02-30", None, "query.from"),
        ("2024-W01-1", None, "query.from"),
        (None, "２０２４-01-01", "query.to"),
        ("2024-01-02", "2024-01-02", "query.to"),
        ("2024-01-03", "2024-01-02", "query.to"),
    ],
)
def test_bad_periods_name_their_field(start: str | None, end: str | None, field: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_period(start, end)
    assert info.value.field == field


def test_model_list_keeps_order_without_duplicates() -> None:
    assert parse_model_list(" linear, first_touch,,linear ") == ["linear", "first_touch"]
    assert parse_model_list(None) == []


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ReportFormat.JSON),
        ("", ReportFormat.JSON),
        ("*/*", ReportFormat.JSON),
        ("application/*", ReportFormat.JSON),
        ("text/csv", ReportFormat.CSV),
        ("TEXT/CSV; charset=utf-8", ReportFormat.CSV),
        ("text/csv, */*", ReportFormat.CSV),
        ("*/*;q=0.9, text/csv;q=0.8", ReportFormat.JSON),
        ("text/csv, application/json;q=0.9", ReportFormat.CSV),
        ("application/json;q=0, */*", ReportFormat.CSV),
    ],
)
def test_negotiate(accept: str | None, expected: ReportFormat) -> None:
    assert negotiate(accept) is expected


@pytest.mark.parametrize(
    "accept", ["application/xml", "text/html", "text/csv;q=0", "*/*;q=bad", "image/*"]
)
def test_negotiate_refuses(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(accept)


def test_csv_neutralises_formulas_but_not_numbers() -> None:
    text = write_csv(
        ["name", "amount", "none"],
        [['=HYPERLINK("x")', "-12.50", None], ["@sum", "+3", "ok, quoted"]],
    )
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [
        ["name", "amount", "none"],
        ['\'=HYPERLINK("x")', "-12.50", ""],
        ["'@sum", "+3", "ok, quoted"],
    ]


def test_ratio_and_timestamps() -> None:
    assert ratio(1, 3) == 0.3333
    assert ratio(-31333, 130000) == -0.241
    assert ratio(5, 0) is None
    assert rfc3339(datetime(2024, 1, 5, 10, tzinfo=UTC)) == "2024-01-05T10:00:00Z"
    assert rfc3339(None) is None
