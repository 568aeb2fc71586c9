"""Which rows ROI and compare answer: filters, sort order and page, parsed from the query.

Pure functions (no database, no HTTP objects); they return values or raise ``InvalidQuery``
naming the parameter. The SQL that applies them is in ``services.api.queries``.

Decisions where the contract is silent:
- ``channel`` and ``campaign_id`` take one value or several, comma-separated (order and
  duplicates do not matter; empty items are dropped; an empty value means no filter). A row
  is kept when its campaign's channel is one of ``channel`` and its id one of ``campaign_id``;
  ``sourced=sales`` keeps sales-sourced campaigns (``is_sales_sourced``), ``marketing`` the
  others. A credited campaign with no ``campaign.upserted`` yet has no channel and no source,
  so any ``channel`` or ``sourced`` filter leaves it out. By channel, the filters pick the
  campaigns summed into each channel row.
- ``sort=<field>`` ascending, ``sort=-<field>`` descending. Ties are broken by campaign id
  (by channel: channel, null last), ascending in both directions; a null value (``roi`` and
  ``roas`` when cost is 0, a missing name or channel) sorts last in both directions. Text
  sorts by code point. The default is ``-revenue`` (the model's, in compare the first
  model's): the order the reports always had.
- ROI sorts by ``revenue``, ``deals``, ``cost``, ``roi``, ``roas``, ``campaign_name``,
  ``campaign_id``, ``channel``; compare by ``revenue`` (the first model) or
  ``revenue:<model>`` (one of those compared), ``cost``, ``campaign_name``, ``campaign_id``,
  ``channel`` (its rows have no deals or ratios). By channel there is no campaign to sort by.
- ``limit`` absent means every row (as before paging existed); given, 1..1000. ``offset``
  (default 0) skips that many rows of the sorted, filtered list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.api.errors import InvalidQuery

Sourced = Literal["sales", "marketing"]
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
MAX_FILTER_ITEMS = 500

ROI_SORTS = ("revenue", "deals", "cost", "roi", "roas", "campaign_name", "campaign_id", "channel")
COMPARE_SORTS = ("revenue", "cost", "campaign_name", "campaign_id", "channel")
CAMPAIGN_ONLY = ("campaign_name", "campaign_id")
DEFAULT_SORT = "-revenue"


@dataclass(frozen=True)
class Filters:
    """Keep rows of these channels, campaigns and source (empty or None: no filter)."""

    channels: tuple[str, ...] = ()
    campaign_ids: tuple[str, ...] = ()
    sourced: Sourced | None = None

    @property
    def by_campaign(self) -> bool:
        """Whether the filters involve the ``campaigns`` rows (channel or source)."""
        return bool(self.channels) or self.sourced is not None


@dataclass(frozen=True)
class Sort:
    """Order rows by ``field`` (``model``: whose revenue), descending or not."""

    field: str = "revenue"
    descending: bool = True
    model: str | None = None

    def text(self) -> str:
        """Return the sort as the ``sort`` parameter writes it."""
        name = self.field if self.model is None else f"{self.field}:{self.model}"
        return f"-{name}" if self.descending else name


@dataclass(frozen=True)
class Page:
    """At most ``limit`` rows (None: all) after skipping ``offset``."""

    limit: int | None = None
    offset: int = 0

    @property
    def whole(self) -> bool:
        """Whether the page is the whole list."""
        return self.limit is None and self.offset == 0


def parse_list(field: str, text: str | None) -> tuple[str, ...]:
    """Split ``a,b`` into distinct non-empty items, sorted (their order does not matter)."""
    items = {part.strip() for part in (text or "").split(",")} - {""}
    if len(items) > MAX_FILTER_ITEMS:
        raise InvalidQuery(field, f"at most {MAX_FILTER_ITEMS} values, got {len(items)}")
    if any("\x00" in item for item in items):
        raise InvalidQuery(field, "a value contains a NUL character")
    return tuple(sorted(items))


def parse_filters(channel: str | None, campaign_id: str | None, sourced: Sourced | None) -> Filters:
    """Parse the ``channel``, ``campaign_id`` and ``sourced`` query parameters."""
    return Filters(
        parse_list("query.channel", channel), parse_list("query.campaign_id", campaign_id), sourced
    )


def parse_sort(text: str | None, *, report: Literal["roi", "compare"], group_by: str) -> Sort:
    """Parse ``sort`` for a report and grouping (absent or empty: the default order)."""
    spec = (text or "").strip() or DEFAULT_SORT
    descending = spec.startswith("-")
    name = spec[1:] if descending else spec
    field, colon, model = name.partition(":")
    fields = ROI_SORTS if report == "roi" else COMPARE_SORTS
    if field not in fields:
        raise InvalidQuery(
            "query.sort", f"unknown sort field {field!r}; one of {', '.join(fields)}"
        )
    if group_by != "campaign" and field in CAMPAIGN_ONLY:
        raise InvalidQuery("query.sort", f"{field!r} needs group_by=campaign")
    if colon and (report != "compare" or field != "revenue" or not model):
        raise InvalidQuery("query.sort", "only compare takes a model, as revenue:<model id>")
    return Sort(field, descending, model or None)


def check_sort_model(sort: Sort, models: tuple[str, ...]) -> Sort:
    """Refuse a ``revenue:<model>`` sort whose model is not compared."""
    if sort.model is not None and sort.model not in models:
        raise InvalidQuery(
            "query.sort", f"model {sort.model!r} is not compared; compared: {', '.join(models)}"
        )
    return sort
