"""The read API's engine: read-only, and one consistent snapshot per request.

A report runs several statements (credits, costs, totals); while the worker commits between
them they must still agree to the cent. So each request's session reads one snapshot:
PostgreSQL transactions are REPEATABLE READ (and READ ONLY); on SQLite, whose Python driver
never opens a transaction for a SELECT, we emit ``BEGIN`` ourselves (SQLAlchemy's documented
recipe), and in WAL mode the snapshot holds until the session ends. ``PRAGMA query_only``
makes SQLite refuse writes too: no report ever writes. (The admin dead-letter retry, the API's
one write, uses an ordinary engine of its own; see ``services.api.app``.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event

from services.core.db.engine import make_engine


def make_read_engine(url: str) -> Engine:
    """Create the API's read-only, snapshot-per-transaction engine for ``url``."""
    engine = (
        make_engine(url)
        if url.startswith("sqlite")
        else make_engine(
            url, isolation_level="REPEATABLE READ", execution_options={"postgresql_readonly": True}
        )
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_manual_transactions)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")
