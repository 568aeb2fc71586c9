"""Dialect-neutral ``INSERT … ON CONFLICT`` helpers for PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


def _insert(session: Session, row_cls: type[DeclarativeBase]) -> Any:
    dialect = session.get_bind().dialect.name
    table: Any = row_cls.__table__
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {dialect!r}")


def insert_ignore(
    session: Session,
    row_cls: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    returning: str | None = None,
) -> list[Any]:
    """Insert ``rows``, skipping those whose key exists; return ``returning`` of inserted rows.

    ``returning`` names the single-column primary key. The new keys are found by one lookup
    before a plain bulk insert rather than ``INSERT … RETURNING`` over many rows, which is an
    order of magnitude slower with psycopg. It is exact because the caller holds the batch
    lock (no concurrent writer); ``ON CONFLICT DO NOTHING`` stays as the safety net.
    """
    if not rows:
        return []
    stmt: Insert = _insert(session, row_cls).on_conflict_do_nothing()
    if returning is None:
        session.execute(stmt, list(rows))
        return []
    column = row_cls.__table__.c[returning]
    keys = list(dict.fromkeys(row[returning] for row in rows))
    existing = set(session.scalars(select(column).where(column.in_(keys))))
    fresh = [row for row in rows if row[returning] not in existing]
    if fresh:
        session.execute(stmt, fresh)
    return [key for key in keys if key not in existing]


def upsert(
    session: Session, row_cls: type[DeclarativeBase], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert ``rows`` or overwrite every non-key column of the existing ones."""
    if not rows:
        return
    table = row_cls.__table__
    keys = [c.name for c in table.primary_key.columns]  # type: ignore[attr-defined]
    stmt = _insert(session, row_cls)
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates), list(rows))
