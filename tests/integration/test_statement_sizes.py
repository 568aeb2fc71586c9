"""No statement of the worker grows with its batch (issue 9, item 1).

SQLite refuses a compound SELECT of more than 500 terms and, on stock builds, more than 32,766
bound parameters, and nests an OR chain one expression level per term (at most 1,000). So the
size of every statement the worker sends must be bounded whatever the batch: the same batch
shape at ten times the size must send statements of the same size. Measured on SQLite with a
hostile mix (many currencies and rate dates, merges, moves, touches, costs, won deals).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event

from services.attribution.batch import Record, apply_batch
from services.core.db.engine import make_engine, make_sessionmaker
from tests.conftest import make_settings
from tests.support.infra import sqlite_database

pytestmark = pytest.mark.integration

# Currencies other than the reporting one (USD); a batch cycles through them.
CURRENCIES = ["EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN", "KWD", "MXN"]
DAY0 = date(2025, 1, 1)


def at(day: date, hour: int = 9) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00Z"


def first_batch(units: int) -> list[dict[str, Any]]:
    """Contacts, merges, touches and won deals in many currencies, no rates yet."""
    events: list[dict[str, Any]] = []
    for u in range(units):
        cur, close = CURRENCIES[u % len(CURRENCIES)], DAY0 + timedelta(days=u % 300 + 30)
        events += [
            {"event_id": f"c{u}", "type": "contact.upserted", "occurred_at": at(DAY0),
             "contact_id": f"p{u}", "account_id": f"a{u}"},
            {"event_id": f"c{u}-old", "type": "contact.upserted", "occurred_at": at(DAY0),
             "contact_id": f"q{u}", "account_id": None},
            {"event_id": f"m{u}", "type": "contact.merged", "occurred_at": at(DAY0, 10),
             "contact_id": f"p{u}", "merged_contact_id": f"q{u}"},
            {"event_id": f"t{u}", "type": "touch", "occurred_at": at(close - timedelta(days=9)),
             "campaign_id": f"k{u % 7}", "contact_id": f"q{u}"},
            {"event_id": f"d{u}", "type": "deal.created", "occurred_at": at(close - timedelta(5)),
             "deal_id": f"D{u}", "account_id": f"a{u}", "amount": "1000", "currency": cur,
             "contact_ids": [f"p{u}"]},
            {"event_id": f"w{u}", "type": "deal.closed_won", "occurred_at": at(close),
             "deal_id": f"D{u}"},
        ]  # fmt: skip
    return events


def second_batch(units: int) -> list[dict[str, Any]]:
    """Rates on many dates in every currency, costs, more touches, contacts moving account."""
    events: list[dict[str, Any]] = []
    for u in range(units):
        cur, day = CURRENCIES[u % len(CURRENCIES)], DAY0 + timedelta(days=u % 360)
        events += [
            {"event_id": f"fx{u}", "type": "fx.rate", "occurred_at": at(day, 0),
             "date": day.isoformat(), "base": cur, "quote": "USD", "rate": "1.2345"},
            {"event_id": f"fxi{u}", "type": "fx.rate", "occurred_at": at(day, 1),
             "date": day.isoformat(), "base": "USD", "quote": cur, "rate": "0.81"},
            {"event_id": f"cost{u}", "type": "campaign.cost", "occurred_at": at(day),
             "campaign_id": f"k{u % 7}", "amount": "70", "currency": cur,
             "period_start": day.isoformat(), "period_end": (day + timedelta(6)).isoformat()},
            {"event_id": f"t2-{u}", "type": "touch", "occurred_at": at(day),
             "campaign_id": f"k{u % 5}", "account_id": f"a{u}"},
            {"event_id": f"mv{u}", "type": "contact.upserted", "occurred_at": at(day, 12),
             "contact_id": f"p{u}", "account_id": f"b{u}"},
        ]  # fmt: skip
    return events


@contextmanager
def statement_sizes(engine: Any) -> Iterator[list[tuple[int, int, int]]]:
    """Record (bound parameters, UNIONs, ORs) of every statement sent to ``engine``."""
    seen: list[tuple[int, int, int]] = []

    def note(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        row = params[0] if many and params else params
        count = len(row) if row else 0
        seen.append((count, len(re.findall(r"\bUNION\b", statement)), statement.count(" OR ")))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def largest_statements(directory: Path, units: int) -> tuple[int, int, int]:
    directory.mkdir()
    with sqlite_database(directory) as url:
        engine = make_engine(url)
        settings = make_settings(database_url=url, bootstrap="unused:9092")
        sessions = make_sessionmaker(engine)
        with statement_sizes(engine) as seen:
            for offset, batch in enumerate((first_batch(units), second_batch(units))):
                record = Record("t", 0, offset, orjson.dumps(batch))
                applied = apply_batch(sessions, [record], settings=settings)
                assert applied.dead == () and applied.result.stored == len(batch)
        engine.dispose()
    return (
        max(params for params, _, _ in seen),
        max(unions for _, unions, _ in seen),
        max(ors for _, _, ors in seen),
    )


def test_statements_do_not_grow_with_the_batch(tmp_path: Path) -> None:
    small = largest_statements(tmp_path / "small", 60)
    large = largest_statements(tmp_path / "large", 600)
    assert large == small, f"largest (parameters, UNIONs, ORs): {small} -> {large}"
