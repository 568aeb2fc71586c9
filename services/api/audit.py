"""The audit log as admins read it: newest first, in pages (``GET /v1/admin/audit``).

Rows are written by ``services.core.audit.record_audit`` in the transaction of each admin
action; this module only reads them, with the request's read-only session.
"""

from __future__ import annotations

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.formatting import rfc3339
from services.api.schemas import AuditEntryOut, AuditLogOut
from services.core.db.schema import AuditLogRow


def list_audit(
    session: Session, *, limit: int, before_id: int | None, action: str | None
) -> AuditLogOut:
    """Return up to ``limit`` audit entries with an id below ``before_id``, newest first."""
    query = select(AuditLogRow).order_by(AuditLogRow.id.desc()).limit(limit + 1)
    if before_id is not None:
        query = query.where(AuditLogRow.id < before_id)
    if action:
        query = query.where(AuditLogRow.action == action)
    rows = list(session.scalars(query))
    page = rows[:limit]
    # One row more than asked for tells whether an older page exists without a COUNT.
    next_before_id = page[-1].id if len(rows) > limit else None
    return AuditLogOut(entries=[_out(r) for r in page], next_before_id=next_before_id)


def _out(row: AuditLogRow) -> AuditEntryOut:
    return AuditEntryOut(
        id=row.id,
        at=rfc3339(row.at) or "",
        key_id=row.key_id,
        key_name=row.key_name,
        action=row.action,
        target=row.target,
        detail=orjson.loads(row.detail or "{}"),
    )
