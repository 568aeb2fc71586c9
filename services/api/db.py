"""The read API's engines: reports read one consistent snapshot per request, read-only.

A report runs several statements (credits, costs, totals); while the worker commits between
them they must still agree to the cent. So each request's session reads one snapshot:
PostgreSQL transactions are REPEATABLE READ (and READ ONLY); on SQLite, whose Python driver
never opens a transaction for a SELECT, we emit ``BEGIN`` ourselves (SQLAlchemy's documented
recipe), and in WAL mode the snapshot holds until the session ends. ``PRAGMA query_only``
makes SQLite refuse writes too: no report ever writes. (The admin dead-letter retry, the API's
one write, uses an ordinary engine of its own; see ``services.api.app``.)

On PostgreSQL the pool keeps up to ``POOL_SIZE`` connections between requests (and opens up
to ``POOL_SIZE`` more under load). With SQLAlchemy's default of 5, a connection beyond the fifth
was opened for one request and closed after it: under 32 concurrent clients most requests
paid a connection set-up, and PostgreSQL a backend start. The report cache's version check
has an autocommit engine of its own (``make_statement_engine``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event

from services.core.db.engine import make_engine

POOL_SIZE = 20
# Version checks at once (and connections for them): a check is two round trips, so a few serve
# many clients; fewer threads in play also shortens the tail. Measured at 32 clients, 100k
# deals: p95 29-39 ms with 4, 44-51 with 8 or 16, 56-62 with 32, at the same ~1,350 req/s.
STATEMENT_POOL_SIZE = 4


def make_read_engine(url: str) -> Engine:
    """Create the API's read-only, snapshot-per-transaction engine for ``url``."""
    engine = (
        make_engine(url)
        if url.startswith("sqlite")
        else make_engine(
            url,
            isolation_level="REPEATABLE READ",
            execution_options={"postgresql_readonly": True},
            pool_size=POOL_SIZE,
            max_overflow=POOL_SIZE,
        )
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_manual_transactions)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def make_statement_engine(url: str) -> Engine:
    """Create an engine for single statements outside any transaction (autocommit).

    Only the report cache's version check uses it (``services.api.cache``): one constant
    SELECT a request, for which a transaction's BEGIN and ROLLBACK would double the round
    trips. Its own pool, so that reports being built (which hold read connections for
    seconds) never make a cache hit wait for a connection.
    """
    if url.startswith("sqlite"):
        engine = make_engine(url)
        event.listen(engine, "connect", _sqlite_manual_transactions)  # autocommit, query only
        return engine
    # No ping on checkout (a round trip as dear as the check itself): the check retries once
    # on a fresh connection when a pooled one turns out dead (``CachedReports._current``).
    return make_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_size=STATEMENT_POOL_SIZE,
        max_overflow=0,
        pool_pre_ping=False,
    )


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")
