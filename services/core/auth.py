"""API keys: generation, hashing, scope checks, expiry and revocation (no HTTP here).

Keys are 32 random bytes (URL-safe base64) behind a ``cl_`` prefix; only their SHA-256 is
stored. A fast hash is right for high-entropy secrets: there is nothing to brute-force.

A key is active until it is revoked (``revoked_at``) or expires (``expires_at``); after
either, ``lookup_key`` no longer finds it. The services cache lookups for at most
``api_key_cache_s`` seconds (``services.core.http.KeyStore``), so a revoked or expired key
stops working within that many seconds. Revocation is kept (never deleted), so the audit log
and ``keys list`` can still name the key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from sqlalchemy import or_, select
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


class InvalidExpiry(ValueError):
    """An expiry that is neither a duration (``90d``, ``12h``) nor a future date or time."""


class KeyNotFound(LookupError):
    """No API key with this id."""


KeyState = Literal["active", "revoked", "expired"]
_DURATION = re.compile(r"([0-9]{1,6})([dh])")
_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1)}
MAX_EXPIRY = timedelta(days=100 * 366)


def parse_expiry(text: str, *, now: datetime) -> datetime:
    """Parse ``--expires``: ``90d``, ``12h``, a date (its UTC midnight) or an RFC 3339 time."""
    expires = _expiry_moment(text.strip(), now)
    if expires is None:
        raise InvalidExpiry(
            f"{text!r} is not an expiry: use a duration such as 90d or 12h, a date "
            "(2027-01-01) or a time with an offset (2027-01-01T00:00:00Z)"
        )
    if expires <= now:
        raise InvalidExpiry(f"{text!r} is not in the future")
    if expires - now > MAX_EXPIRY:
        raise InvalidExpiry(f"{text!r} is more than 100 years away; leave --expires out instead")
    return expires


def _expiry_moment(value: str, now: datetime) -> datetime | None:
    duration = _DURATION.fullmatch(value.lower())
    try:
        if duration:
            return now + int(duration.group(1)) * _UNITS[duration.group(2)]
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None  # naive: ambiguous


@dataclass(frozen=True)
class IssuedKey:
    """A newly stored key: its id, and the secret shown to its owner once."""

    key_id: int
    secret: str


def issue_key(
    session: Session, *, name: str, scopes: list[str], expires_at: datetime | None = None
) -> IssuedKey:
    """Store a new key (flushed, so it has its id) and return it with its secret."""
    secret = "cl_" + secrets.token_urlsafe(32)
    row = ApiKeyRow(
        name=name,
        key_prefix=secret[:10],
        key_hash=hash_key(secret),
        scopes=",".join(scopes),
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return IssuedKey(row.id, secret)


def create_key(
    session: Session, *, name: str, scopes: list[str], expires_at: datetime | None = None
) -> str:
    """Store a new key and return its secret (the only time it is visible)."""
    return issue_key(session, name=name, scopes=scopes, expires_at=expires_at).secret


def lookup_key(session: Session, secret: str, *, now: datetime | None = None) -> Principal | None:
    """Return the principal of an active key (neither revoked nor expired), or None."""
    moment = now or datetime.now(UTC)
    row = session.scalars(
        select(ApiKeyRow).where(
            ApiKeyRow.key_hash == hash_key(secret),
            ApiKeyRow.revoked_at.is_(None),
            or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > moment),
        )
    ).first()
    if row is None:
        return None
    return Principal(key_id=row.id, name=row.name, scopes=frozenset(row.scopes.split(",")))


def key_state(row: ApiKeyRow, *, now: datetime) -> KeyState:
    """Return whether a key is active, revoked or expired at ``now`` (revoked wins)."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def list_keys(session: Session) -> list[ApiKeyRow]:
    """Return every key, revoked and expired ones too, in id order."""
    return list(session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id)))


def revoke_key(session: Session, key_id: int, *, now: datetime) -> tuple[ApiKeyRow, bool]:
    """Revoke a key; return it and whether this call revoked it (False: it already was)."""
    row = session.get(ApiKeyRow, key_id, with_for_update=True)
    if row is None:
        raise KeyNotFound(key_id)
    if row.revoked_at is not None:
        return row, False
    row.revoked_at = now
    return row, True
