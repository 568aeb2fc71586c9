"""Every report body rendered as JSON or CSV; the only place that writes CSV.

CSV decisions: a header row, then the JSON report's rows with the same fields in the same order
(totals are left out: a CSV is one table). Compare flattens ``revenue`` into one
``revenue_<model>`` column per model; reconciliation is one row per model; a deal's attribution
is one row per journey touch, with its ``roles`` comma-joined; dead letters and audit entries
are one row each (``next_after_id`` / ``next_before_id`` are left out, like totals; an entry's
``detail`` is its JSON text), and so are conflicts (payloads as JSON text); a compare diff is
its rows; leads are one row per
account (the snapshot is left out). Empty cells are nulls. Text that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` not followed by a number) is
prefixed with ``'`` (OWASP CSV injection advice); money and numbers are written as they are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from functools import singledispatch
from typing import Any

import orjson
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from services.api.params import ReportFormat
from services.api.schemas import (
    AuditLogOut,
    CompareDiffOut,
    CompareReportOut,
    ConflictsOut,
    DeadLettersOut,
    DealAttributionOut,
    LeadsOut,
    ReconciliationOut,
    RoiReportOut,
)

Table = tuple[list[str], list[list[Any]]]

_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_responses(invalid: str) -> dict[int | str, dict[str, Any]]:
    """Describe a report that also answers CSV: 200 ``text/csv``, 406, 422 ``invalid``."""
    return {
        200: {"content": {"text/csv": {}}},
        406: {"description": "neither JSON nor CSV accepted"},
        422: {"description": invalid},
    }


def render(body: BaseModel, fmt: ReportFormat, *, filename: str) -> Response:
    """Answer ``body`` as JSON, or as a CSV attachment named ``filename``."""
    if fmt is ReportFormat.CSV:
        header, rows = table(body)
        return Response(
            write_csv(header, rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return JSONResponse(body.model_dump(mode="json"))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Write a header and rows as CSV text (RFC 4180 quoting, CRLF line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([_cell(h) for h in header])
    writer.writerows([_cell(v) for v in row] for row in rows)
    return buffer.getvalue()


@singledispatch
def table(body: BaseModel) -> Table:
    """Flatten a report body into a header and rows."""
    raise TypeError(f"no CSV form for {type(body).__name__}")


_RATIOS = ["revenue", "deals", "cost", "roi", "roas"]


@table.register
def _roi(body: RoiReportOut) -> Table:
    keys = (
        ["campaign_id", "campaign_name", "channel"] if body.group_by == "campaign" else ["channel"]
    ) + _RATIOS
    return keys, [[getattr(row, k) for k in keys] for row in body.rows]


@table.register
def _compare(body: CompareReportOut) -> Table:
    keys = (
        ["campaign_id", "campaign_name", "channel"] if body.group_by == "campaign" else ["channel"]
    )
    header = keys + [f"revenue_{m}" for m in body.models] + ["cost"]
    rows = [
        [getattr(row, k) for k in keys] + [row.revenue[m] for m in body.models] + [row.cost]
        for row in body.rows
    ]
    return header, rows


@table.register
def _reconciliation(body: ReconciliationOut) -> Table:
    header = [
        "model",
        "currency",
        "from",
        "to",
        "closed_won_revenue",
        "won_deals",
        "status",
        "attributed",
        "unattributed",
        "pending",
        "unconverted_count",
    ]
    rows = [
        [
            model_id,
            body.currency,
            body.from_,
            body.to,
            body.closed_won_revenue,
            body.won_deals,
            m.status,
            m.attributed,
            m.unattributed,
            m.pending,
            body.unconverted.count,
        ]
        for model_id, m in body.models.items()
    ]
    return header, rows


@table.register
def _deal(body: DealAttributionOut) -> Table:
    header = [
        "deal_id",
        "model",
        "status",
        "event_id",
        "occurred_at",
        "campaign_id",
        "channel",
        "roles",
        "weight",
        "credit",
    ]
    rows = [
        [
            body.deal.deal_id,
            body.model,
            body.deal.status,
            t.event_id,
            t.occurred_at,
            t.campaign_id,
            t.channel,
            ",".join(t.roles),
            t.weight,
            t.credit,
        ]
        for t in body.journey
    ]
    return header, rows


_DEAD_LETTER_FIELDS = [
    "id",
    "topic",
    "partition",
    "offset",
    "error",
    "created_at",
    "retried_at",
    "raw",
    "raw_base64",
]


@table.register
def _dead_letters(body: DeadLettersOut) -> Table:
    return _DEAD_LETTER_FIELDS, [
        [getattr(d, k) for k in _DEAD_LETTER_FIELDS] for d in body.dead_letters
    ]


_CONFLICT_FIELDS = [
    "id",
    "event_id",
    "partition",
    "offset",
    "first_seen_at",
    "last_seen_at",
    "copies",
    "payload_sha256",
]


@table.register
def _conflicts(body: ConflictsOut) -> Table:
    header = [*_CONFLICT_FIELDS, "stored_payload", "conflicting_payload"]
    return header, [
        [getattr(c, k) for k in _CONFLICT_FIELDS]
        + [orjson.dumps(c.stored_payload).decode(), orjson.dumps(c.conflicting_payload).decode()]
        for c in body.conflicts
    ]


_MOVES = ["base_revenue", "other_revenue", "moved", "moved_share"]


@table.register
def _diff(body: CompareDiffOut) -> Table:
    keys = (
        ["campaign_id", "campaign_name", "channel"] if body.group_by == "campaign" else ["channel"]
    ) + _MOVES
    return keys, [[getattr(row, k) for k in keys] for row in body.rows]


_LEAD_FIELDS = ["account_id", "probability", "touches", "last_touch_at", "state"]


@table.register
def _leads(body: LeadsOut) -> Table:
    return _LEAD_FIELDS, [[getattr(row, k) for k in _LEAD_FIELDS] for row in body.rows]


_AUDIT_FIELDS = ["id", "at", "key_id", "key_name", "action", "target"]


@table.register
def _audit(body: AuditLogOut) -> Table:
    return _AUDIT_FIELDS + ["detail"], [
        [getattr(e, k) for k in _AUDIT_FIELDS] + [orjson.dumps(e.detail).decode()]
        for e in body.entries
    ]
