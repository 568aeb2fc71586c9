"""``closedloop keys create | list | revoke``: API keys, each change in the audit log.

The CLI acts as the machine's operator: its audit rows name ``cli`` (``services.core.audit``).
Each command is one transaction: a key and its audit row commit together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import typer
from sqlalchemy.orm import Session

from services.core.audit import record_audit
from services.core.auth import (
    InvalidExpiry,
    KeyNotFound,
    UnknownScope,
    issue_key,
    key_state,
    list_keys,
    parse_expiry,
    parse_scopes,
    revoke_key,
)
from services.core.db.engine import make_engine, make_sessionmaker
from services.core.settings import Settings


@contextmanager
def _transaction(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create(settings: Settings, *, name: str, scopes: str, expires: str | None) -> None:
    """Create a key, record it in the audit log, and print its secret once."""
    now = datetime.now(UTC)
    try:
        scope_list = parse_scopes(scopes)
    except UnknownScope as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from None
    try:
        expires_at = None if expires is None else parse_expiry(expires, now=now)
    except InvalidExpiry as exc:
        raise typer.BadParameter(str(exc), param_hint="--expires") from None
    with _transaction(settings) as session:
        issued = issue_key(session, name=name, scopes=scope_list, expires_at=expires_at)
        detail = {"name": name, "scopes": scope_list, "expires_at": _when(expires_at)}
        record_audit(session, None, "key.create", f"key:{issued.key_id}", detail, at=now)
    typer.echo(issued.secret)


def show(settings: Settings) -> None:
    """Print every key, one per line, tab-separated under a header."""
    now = datetime.now(UTC)
    with _transaction(settings) as session:
        lines = [
            "\t".join(
                (
                    str(row.id),
                    row.name,
                    row.key_prefix + "…",
                    row.scopes,
                    _when(row.created_at),
                    _when(row.expires_at),
                    key_state(row, now=now),
                )
            )
            for row in list_keys(session)
        ]
    typer.echo("id\tname\tprefix\tscopes\tcreated\texpires\tstate")
    for line in lines:
        typer.echo(line)


def revoke(settings: Settings, key_id: int) -> None:
    """Revoke a key and record it; say so if it was already revoked (exit 1 if unknown)."""
    now = datetime.now(UTC)
    try:
        with _transaction(settings) as session:
            row, revoked = revoke_key(session, key_id, now=now)
            if revoked:
                detail = {"name": row.name, "scopes": row.scopes.split(",")}
                record_audit(session, None, "key.revoke", f"key:{key_id}", detail, at=now)
            name, revoked_at = row.name, row.revoked_at
    except KeyNotFound:
        typer.echo(f"no API key with id {key_id} (see closedloop keys list)", err=True)
        raise typer.Exit(1) from None
    if revoked:
        typer.echo(f"revoked key {key_id} ({name}); the services refuse it within seconds")
    else:
        typer.echo(f"key {key_id} ({name}) was already revoked at {_when(revoked_at)}")
