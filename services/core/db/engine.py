"""Engine and session factories; the only place that knows dialect quirks of connections."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from services.core.db.rollups import track_orm_writes


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the worker writes; busy_timeout makes writers wait, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (PostgreSQL or SQLite) with the project's settings."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Plain executemany (psycopg pipelines it) beats multi-row VALUES statements, whose huge
    # SQL text psycopg re-parses on every execution.
    kwargs.setdefault("use_insertmanyvalues", False)
    # A database that vanishes without closing connections must not hang a process forever:
    # bounded connects, TCP keepalives, and a ceiling on any single statement.
    connect_args = {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        # Custom plans: a generic plan for ``= ANY(:array)`` (how ``among`` tests membership)
        # cannot see the array's size and turns index lookups into full scans (2x slower).
        "options": "-c statement_timeout=300000 -c plan_cache_mode=force_custom_plan",
    }
    connect_args.update(kwargs.pop("connect_args", {}))
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, connect_args=connect_args, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory; sessions never expire objects on commit.

    Its sessions keep the report rollups right for summarised rows written through the ORM
    (``services.core.db.rollups.track_orm_writes``).
    """
    factory = sessionmaker(engine, expire_on_commit=False)
    track_orm_writes(factory)
    return factory
