"""Parsing of ROI's and compare's filters and sort (``services.api.selection``)."""

from __future__ import annotations

import pytest

from services.api.errors import InvalidQuery
from services.api.selection import Filters, Sort, check_sort_model, parse_filters, parse_sort


def test_lists_are_sets_in_code_point_order() -> None:
    assert parse_filters(" b,a,,b ,A", None, "sales") == Filters(("A", "a", "b"), (), "sales")
    assert parse_filters("", ",", None) == Filters()
    assert not Filters(campaign_ids=("x",)).by_campaign
    assert Filters(sourced="marketing").by_campaign


@pytest.mark.parametrize(
    ("text", "report", "want"),
    [
        (None, "roi", Sort("revenue", True, None)),
        ("", "compare", Sort("revenue", True, None)),
        ("roi", "roi", Sort("roi", False, None)),
        ("-campaign_name", "roi", Sort("campaign_name", True, None)),
        ("-revenue:linear", "compare", Sort("revenue", True, "linear")),
        ("cost", "compare", Sort("cost", False, None)),
    ],
)
def test_sorts(text: str | None, report: str, want: Sort) -> None:
    got = parse_sort(text, report=report, group_by="campaign")  # type: ignore[arg-type]
    assert got == want
    assert parse_sort(got.text(), report=report, group_by="campaign") == got  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "report", "group_by"),
    [
        ("name", "roi", "campaign"),
        ("--revenue", "roi", "campaign"),
        ("+revenue", "roi", "campaign"),
        ("revenue:linear", "roi", "campaign"),
        ("cost:linear", "compare", "campaign"),
        ("revenue:", "compare", "campaign"),
        ("deals", "compare", "campaign"),
        ("roas", "compare", "campaign"),
        ("campaign_id", "roi", "channel"),
        ("-campaign_name", "compare", "channel"),
    ],
)
def test_bad_sorts_name_the_parameter(text: str, report: str, group_by: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse_sort(text, report=report, group_by=group_by)  # type: ignore[arg-type]
    assert caught.value.field == "query.sort"


def test_sort_model_must_be_compared_and_lists_are_bounded() -> None:
    assert check_sort_model(Sort(model="a"), ("a", "b")) == Sort(model="a")
    with pytest.raises(InvalidQuery, match="not compared"):
        check_sort_model(Sort(model="c"), ("a", "b"))
    with pytest.raises(InvalidQuery) as caught:
        parse_filters(None, ",".join(str(i) for i in range(501)), None)
    assert caught.value.field == "query.campaign_id"
    with pytest.raises(InvalidQuery) as caught:
        parse_filters("a\x00", None, None)
    assert caught.value.field == "query.channel"
