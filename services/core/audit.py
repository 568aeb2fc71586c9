"""The audit log: who did which admin action to what, and when (table ``audit_log``).

``record_audit`` adds one row in the caller's transaction, so an action and its record commit
together or not at all. Every admin write calls it: key creation and revocation (CLI), model
definitions and deletions, fit requests, dead-letter retries, and any later admin write
(conflicts, lead definitions). The API names the caller by its key (id and name); the CLI,
run by whoever operates the machine, as ``cli`` with no key id.

Actions are ``<resource>.<verb>`` (``key.create``, ``model.delete``, ...); targets are
``<resource>:<id>``; ``detail`` is a small JSON object of what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from services.core.auth import Principal
from services.core.db.schema import AuditLogRow

CLI_ACTOR = "cli"
MAX_TARGET = 300  # audit_log.target


def record_audit(
    session: Session,
    principal: Principal | None,
    action: str,
    target: str,
    detail: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> AuditLogRow:
    """Add an audit row for ``action`` on ``target`` by ``principal`` (None: the CLI)."""
    row = AuditLogRow(
        at=at or datetime.now(UTC),
        key_id=None if principal is None else principal.key_id,
        key_name=CLI_ACTOR if principal is None else principal.name,
        action=action,
        target=target[:MAX_TARGET],
        # Sorted keys: the same detail is always the same text.
        detail=orjson.dumps(dict(detail or {}), option=orjson.OPT_SORT_KEYS).decode(),
    )
    session.add(row)
    return row
