"""API keys: generation, hashing and scope checks (no HTTP here).

Keys are 32 random bytes (URL-safe base64) behind a ``cl_`` prefix; only their SHA-256 is
stored. A fast hash is right for high-entropy secrets: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.core.db.schema import ApiKeyRow

SCOPES = ("ingest", "read", "admin")
# The shape of every key ``create_key`` makes: ``cl_`` + token_urlsafe(32), 43 characters.
KEY_SHAPE = re.compile(r"cl_[A-Za-z0-9_-]{43}")
KEY_LENGTH = 46


class UnknownScope(ValueError):
    """A scope that is not one of ``ingest``, ``read``, ``admin``."""


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    scopes: frozenset[str]


def well_formed(secret: str) -> bool:
    """Return whether ``secret`` has the shape of an API key (checked before any lookup)."""
    return len(secret) == KEY_LENGTH and KEY_SHAPE.fullmatch(secret) is not None


def hash_key(key: str) -> str:
    """Return the stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str) -> list[str]:
    """Parse ``read,ingest`` into a list of known scopes."""
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise UnknownScope(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {text!r}"
        )
    return scopes


def create_key(session: Session, *, name: str, scopes: list[str]) -> str:
    """Store a new key and return its secret (the only time it is visible)."""
    secret = "cl_" + secrets.token_urlsafe(32)
    session.add(
        ApiKeyRow(
            name=name,
            key_prefix=secret[:10],
            key_hash=hash_key(secret),
            scopes=",".join(scopes),
            created_at=datetime.now(UTC),
        )
    )
    return secret


def lookup_key(session: Session, secret: str) -> Principal | None:
    """Return the principal of an active key, or None."""
    row = session.scalars(
        select(ApiKeyRow).where(
            ApiKeyRow.key_hash == hash_key(secret), ApiKeyRow.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    return Principal(key_id=row.id, name=row.name, scopes=frozenset(row.scopes.split(",")))
