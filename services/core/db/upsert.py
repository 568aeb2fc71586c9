"""Dialect-neutral helpers for PostgreSQL and SQLite: ``INSERT … ON CONFLICT``, bulk inserts
of new rows, and membership tests against long lists of values.

No statement built here grows with the number of values or rows: a membership test is one
parameter (an array, or a JSON list), and many rows go through ``executemany`` or ``COPY``.
So a batch of any size stays within every supported database's limits (SQLite's 32,766 bound
parameters, 500 compound-SELECT terms and expression depth of 1,000 included).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Insert, String, any_, bindparam, func, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session


def among(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """Return ``column IN values`` as ONE bound parameter, whatever the number of values.

    PostgreSQL: ``column = ANY(:array)``. SQLite: ``column IN (SELECT value FROM
    json_each(:list))``, which searches ``column``'s index for each value like ``IN (?, ?,
    …)`` does, without a parameter per value (a plain ``IN`` of a batch's ids could pass
    SQLite's limit). The statement text is the same for any number of values, so compiled
    statements are reused instead of being rebuilt for every batch.
    """
    values = list(values)
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        array = bindparam(None, values, type_=postgresql.ARRAY(column.type))
        return column == any_(array)
    # Values as the column stores them (dates and datetimes are text in SQLite).
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if process is not None:
        values = [None if v is None else process(v) for v in values]
    members = func.json_each(bindparam(None, orjson.dumps(values).decode(), type_=String()))
    return column.in_(select(members.table_valued("value").c.value))


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
    order of magnitude slower with psycopg. A row another transaction inserts between the
    lookup and the insert is skipped by ``ON CONFLICT DO NOTHING`` (and not returned as new
    only if that transaction committed first: callers key such rows by event, whose copies one
    partition, hence one worker, stores).
    """
    if not rows:
        return []
    stmt: Insert = _insert(session, row_cls).on_conflict_do_nothing()
    if returning is None:
        session.execute(stmt, list(rows))
        return []
    column = row_cls.__table__.c[returning]
    keys = list(dict.fromkeys(row[returning] for row in rows))
    existing = set(session.scalars(select(column).where(among(session, column, keys))))
    fresh = [row for row in rows if row[returning] not in existing]
    if fresh:
        session.execute(stmt, fresh)
    return [key for key in keys if key not in existing]


def insert_new(
    session: Session, row_cls: type[DeclarativeBase], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert ``rows`` whose keys the caller knows to be absent (no ``ON CONFLICT``).

    Callers own the keys: rows keyed by a new event, or a deal's or root's rows just deleted
    under its claim. Should another transaction insert one of the keys anyway, the insert
    fails on it (an ``IntegrityError``, which the worker isolates) rather than overwrite it.

    PostgreSQL gets them through ``COPY``, several times faster than a multi-row insert for
    the thousands of rows a batch writes; other databases get a plain bulk insert. Values go
    through the columns' own bind processing (e.g. aware UTC datetimes stored naive), as
    with any SQLAlchemy insert.
    """
    if not rows:
        return
    table: Any = row_cls.__table__
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql":
        session.execute(table.insert(), list(rows))
        return
    columns = [c for c in table.columns if c.name in rows[0]]
    processors = [c.type.bind_processor(dialect) for c in columns]
    names = [c.name for c in columns]
    quoted = ", ".join(dialect.identifier_preparer.quote(n) for n in names)
    raw = connection.connection.driver_connection
    assert raw is not None, "a live connection has its driver connection"
    statement = f"COPY {table.name} ({quoted}) FROM STDIN"
    error = dialect.loaded_dbapi.Error
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        value if process is None or value is None else process(value)
                        for value, process in zip([row[n] for n in names], processors, strict=True)
                    ]
                )
    except error as exc:
        # Raised the way SQLAlchemy raises driver errors (DataError, IntegrityError, …), so
        # callers handle a refused COPY like any refused statement.
        raise DBAPIError.instance(statement, None, exc, error) from exc


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


def upsert_latest(
    session: Session,
    row_cls: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    stamp: tuple[str, str] = ("occurred_at", "event_id"),
) -> None:
    """Insert ``rows``, or overwrite an existing row only where the new ``stamp`` is later.

    ``stamp`` names the (occurred_at, event_id) columns: "the latest event wins" in the order
    of contract §1, whatever order the rows arrive in; a row without a stamp yet always
    loses. Rows must have distinct keys.
    """
    if not rows:
        return
    table = row_cls.__table__
    keys = [c.name for c in table.primary_key.columns]  # type: ignore[attr-defined]
    stmt = _insert(session, row_cls)
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    current = tuple_(*(table.c[name] for name in stamp))
    incoming = tuple_(*(stmt.excluded[name] for name in stamp))
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=keys,
            set_=updates,
            where=or_(table.c[stamp[0]].is_(None), current < incoming),
        ),
        list(rows),
    )
