"""Lead definitions (contract §7): named, versioned rules, at most one of them active.

Invariants:
- A version is never changed or deleted. A ``PUT`` stores version n + 1 (1 for a new
  definition) only when its rule differs from version n's (compared as canonical rules,
  ``services.domain.leads``); repeating the latest rule stores nothing, whatever its note.
- At most one definition is active: ``system_state`` key ``active_lead_definition`` holds its
  id, and no row means none is. Activating one replaces the previous one in the same upsert;
  deactivating deletes the row only while it still names this definition, so a deactivation
  racing an activation of another definition cannot undo it.
- Each ``PUT`` is one transaction on the API's writable engine (see ``services.api.app``),
  with its audit row (``lead_definition.define``) and, when it changed anything (a version or
  the active definition), a new projection version, so nothing cached before it is served
  after it.

Concurrent ``PUT``s: on PostgreSQL each takes one transaction-scoped advisory lock first, so
they run one after another (versions and the active flag are decided on what the previous one
committed). SQLite serialises writers itself, but a ``PUT`` may have read the latest version
before another committed: the primary key (definition_id, version) then refuses its insert,
and it rolls back and starts again, reading the winner's version.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.api.errors import InvalidQuery, LeadDefinitionNotFound
from services.api.formatting import rfc3339
from services.api.lead_schemas import (
    LeadDefinitionIn,
    LeadDefinitionOut,
    LeadDefinitionsOut,
    LeadDefinitionVersionOut,
    LeadRuleOut,
)
from services.core.audit import record_audit
from services.core.auth import Principal
from services.core.db.schema import LeadDefinitionRow, SystemStateRow
from services.core.db.unit_of_work import nothing_changed, unit_of_work
from services.core.db.upsert import upsert
from services.domain.leads import (
    InvalidLeadRule,
    LeadRule,
    make_rule,
    rule_fields,
    rule_from_json,
    rule_to_json,
)

DEFINITION_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
ACTIVE_KEY = "active_lead_definition"
# Each round of racing SQLite writers lets at least one of them through.
_ATTEMPTS = 10
_PG_LOCK = 7_120_421_002  # services.attribution.projector holds ..._001


def _lock(session: Session) -> None:
    """Serialise lead-definition writes (PostgreSQL; SQLite serialises writers itself)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})


def check_definition_id(definition_id: str) -> None:
    """Raise InvalidQuery unless ``definition_id`` is a definition id (a slug)."""
    if not DEFINITION_ID.fullmatch(definition_id):
        raise InvalidQuery(
            "path.definition_id",
            f"{definition_id!r} is not a definition id: 1 to 100 characters of a-z, 0-9, "
            "'_' and '-', starting with a letter or digit",
            kind="string_pattern_mismatch",
        )


def _rule(body: LeadDefinitionIn) -> LeadRule:
    try:
        return make_rule(
            min_score=body.mql.min_score,
            min_grade=body.mql.min_grade,
            required_attributes=body.mql.required_attributes,
            sales_ready_stages=body.sales_ready_stages,
        )
    except InvalidLeadRule as exc:  # the body's schema already refuses all of these
        raise InvalidQuery("body", str(exc), kind="invalid_rule") from None


def define(
    sessions: sessionmaker[Session],
    definition_id: str,
    body: LeadDefinitionIn,
    *,
    principal: Principal,
    now: datetime,
) -> tuple[LeadDefinitionOut, bool]:
    """Store a new version (unless the rule is the latest one's) and (de)activate it.

    Return the definition and whether a version was stored.
    """
    check_definition_id(definition_id)
    rule = _rule(body)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with unit_of_work(sessions) as session:
                _lock(session)
                version, created = _store(session, definition_id, rule, body.note, principal, now)
                before = _active(session)
                after = _activate(session, definition_id, body.active, before=before, now=now)
                if not created and after == before:
                    nothing_changed(session)
                detail: dict[str, Any] = {
                    "version": version,
                    "new_version": created,
                    "rule": rule_fields(rule),
                    "note": body.note,
                    "active_before": before,
                    "active_after": after,
                }
                target = f"lead_definition:{definition_id}"
                record_audit(session, principal, "lead_definition.define", target, detail, at=now)
                # Read in the same transaction: the answer is the state this PUT committed.
                return find(session, definition_id), created
        except IntegrityError:
            if attempt == _ATTEMPTS:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _store(
    session: Session,
    definition_id: str,
    rule: LeadRule,
    note: str,
    principal: Principal,
    now: datetime,
) -> tuple[int, bool]:
    """Add the next version unless ``rule`` is the latest one's; return (version, added)."""
    latest = session.scalars(
        select(LeadDefinitionRow)
        .where(LeadDefinitionRow.definition_id == definition_id)
        .order_by(LeadDefinitionRow.version.desc())
        .limit(1)
    ).first()
    if latest is not None and _same(latest.rule, rule):
        return latest.version, False
    version = 1 if latest is None else latest.version + 1
    session.add(
        LeadDefinitionRow(
            definition_id=definition_id,
            version=version,
            rule=rule_to_json(rule),
            note=note,
            created_at=now,
            created_by=principal.name,
        )
    )
    session.flush()  # a racing PUT that took this version fails here (IntegrityError)
    return version, True


def _same(stored: str, rule: LeadRule) -> bool:
    try:
        return rule_from_json(stored) == rule
    except InvalidLeadRule:
        return False


def _active(session: Session) -> str | None:
    row = session.get(SystemStateRow, ACTIVE_KEY, populate_existing=True)
    return None if row is None else row.value


def _activate(
    session: Session, definition_id: str, active: bool | None, *, before: str | None, now: datetime
) -> str | None:
    """Apply the ``active`` flag; return the active definition's id afterwards."""
    if active is None or (active and before == definition_id):
        return before
    if active:
        upsert(
            session,
            SystemStateRow,
            [{"key": ACTIVE_KEY, "value": definition_id, "updated_at": now}],
        )
        return definition_id
    session.execute(
        delete(SystemStateRow).where(
            SystemStateRow.key == ACTIVE_KEY, SystemStateRow.value == definition_id
        )
    )
    return None if before == definition_id else before


def _out(rows: Sequence[LeadDefinitionRow], active: str | None) -> LeadDefinitionOut:
    versions = [
        LeadDefinitionVersionOut(
            version=r.version,
            rule=LeadRuleOut.of(rule_from_json(r.rule)),
            note=r.note,
            created_at=rfc3339(r.created_at) or "",
            created_by=r.created_by,
        )
        for r in rows
    ]
    definition_id = rows[0].definition_id
    return LeadDefinitionOut(
        id=definition_id,
        active=definition_id == active,
        version=versions[-1].version,
        rule=versions[-1].rule,
        versions=versions,
    )


def _rows(session: Session, definition_id: str | None = None) -> list[LeadDefinitionRow]:
    query = select(LeadDefinitionRow).order_by(
        LeadDefinitionRow.definition_id, LeadDefinitionRow.version
    )
    if definition_id is not None:
        query = query.where(LeadDefinitionRow.definition_id == definition_id)
    return list(session.scalars(query))


def find(session: Session, definition_id: str) -> LeadDefinitionOut:
    """Return one definition with all its versions, or raise LeadDefinitionNotFound."""
    rows = _rows(session, definition_id) if DEFINITION_ID.fullmatch(definition_id) else []
    if not rows:
        raise LeadDefinitionNotFound(definition_id)
    return _out(rows, _active(session))


def list_all(session: Session) -> LeadDefinitionsOut:
    """Return every definition (by id) with its versions, and which one is active."""
    active = _active(session)
    definitions = [
        _out(list(rows), active)
        for _, rows in groupby(_rows(session), key=lambda r: r.definition_id)
    ]
    return LeadDefinitionsOut(active=active, definitions=definitions)
