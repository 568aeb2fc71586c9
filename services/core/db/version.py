"""The projection version: a token that changes in every transaction that changes the reports.

Every writer of the report projection (the worker's batches, recomputes, fits and custom-model
passes) calls ``bump_projection_version`` inside its own transaction, so the new token becomes
visible exactly when its changes do. Readers may cache anything derived from the projection
under the token they read first: a cached answer is never served after a commit that could
change it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from services.core.db.schema import SystemStateRow
from services.core.db.upsert import upsert

PROJECTION_VERSION_KEY = "projection_version"


def projection_version(session: Session) -> str:
    """Return the current projection version ("0" before any writer committed)."""
    row = session.get(SystemStateRow, PROJECTION_VERSION_KEY, populate_existing=True)
    return row.value if row is not None else "0"


def bump_projection_version(session: Session) -> None:
    """Give the projection a new version, in the caller's transaction."""
    upsert(
        session,
        SystemStateRow,
        [
            {
                "key": PROJECTION_VERSION_KEY,
                "value": uuid.uuid4().hex,
                "updated_at": datetime.now(UTC),
            }
        ],
    )
