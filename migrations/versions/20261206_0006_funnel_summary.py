"""funnel_summary: contact_stage_entries and handoffs, backfilled from the stage histories

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 18:42:42.400997

The worker keeps one row per (root contact, funnel stage entered) and one per root that
became an MQL (``services.attribution.funnel_summary``). A database that already holds stage
histories gets the same rows here, from ``lifecycle_changes``, ``contacts``, ``touches`` and
``campaigns`` as stored, with the rules of ``services.domain.stages`` copied below (so this
revision does not change when later code does; a test holds the two equal). It runs before
the services start, in the migration's transaction, so no reader sees a half-built summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op

import services.core.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ORDER = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")
EXITS = ("recycled", "disqualified")
RESPONSES = ("sql", "recycled", "disqualified")
SALES_TOUCH_TYPES = ("meeting", "call", "sales_email")
_CHUNK = 20_000
_UTC = services.core.db.types.UTCDateTime
_contacts = sa.table("contacts", sa.column("contact_id"), sa.column("root_contact_id"))
_steps = sa.table(
    "lifecycle_changes",
    sa.column("event_id", sa.String()),
    sa.column("contact_id", sa.String()),
    sa.column("stage", sa.String()),
    sa.column("occurred_at", _UTC()),
)
_touches = sa.table(
    "touches",
    sa.column("contact_id", sa.String()),
    sa.column("campaign_id", sa.String()),
    sa.column("touch_type", sa.String()),
    sa.column("occurred_at", _UTC()),
)
_campaigns = sa.table(
    "campaigns", sa.column("campaign_id", sa.String()), sa.column("is_sales_sourced", sa.Boolean())
)


def upgrade() -> None:
    entries = op.create_table(
        "contact_stage_entries",
        sa.Column("root_contact_id", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("entered_at", _UTC(), nullable=False),
        sa.Column("next_micros", sa.BigInteger(), nullable=True),
        sa.Column("exit_stage", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("root_contact_id", "stage", name=op.f("pk_contact_stage_entries")),
    )
    handoffs = op.create_table(
        "handoffs",
        sa.Column("root_contact_id", sa.String(length=200), nullable=False),
        sa.Column("mql_at", _UTC(), nullable=False),
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("responded_at", _UTC(), nullable=True),
        sa.Column("response_micros", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("root_contact_id", name=op.f("pk_handoffs")),
    )
    _backfill(entries, handoffs)
    # Indexes after the bulk load: one build is several times faster than row by row.
    not_null = {
        "postgresql_where": sa.text("next_micros IS NOT NULL"),
        "sqlite_where": sa.text("next_micros IS NOT NULL"),
    }
    with op.batch_alter_table("contact_stage_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contact_stage_entries_stage_entered", ["stage", "entered_at"], unique=False
        )
        batch_op.create_index(
            "ix_contact_stage_entries_stage_next",
            ["stage", "next_micros", "entered_at"],
            unique=False,
            **not_null,
        )
    answered = {
        "postgresql_include": ["mql_at", "responded_at"],
        "postgresql_where": sa.text("response_micros IS NOT NULL"),
        "sqlite_where": sa.text("response_micros IS NOT NULL"),
    }
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handoffs_mql_at"), ["mql_at"], unique=False)
        batch_op.create_index(
            "ix_handoffs_week_response", ["week", "response_micros"], unique=False, **answered
        )
        batch_op.create_index("ix_handoffs_response", ["response_micros"], unique=False, **answered)
        batch_op.create_index(
            "ix_handoffs_responded_at",
            ["responded_at"],
            unique=False,
            postgresql_include=["mql_at"],
        )


def _root() -> Any:
    return sa.func.coalesce(_contacts.c.root_contact_id, _steps.c.contact_id)


def _responses() -> dict[str, list[datetime]]:
    """Return every root's sales-response touch times."""
    root = sa.func.coalesce(_contacts.c.root_contact_id, _touches.c.contact_id)
    rows = op.get_bind().execute(
        sa.select(root, _touches.c.occurred_at)
        .select_from(
            _touches.outerjoin(
                _contacts, _contacts.c.contact_id == _touches.c.contact_id
            ).outerjoin(_campaigns, _campaigns.c.campaign_id == _touches.c.campaign_id)
        )
        .where(
            _touches.c.contact_id.is_not(None),
            sa.or_(
                _campaigns.c.is_sales_sourced.is_(True),
                _touches.c.touch_type.in_(SALES_TOUCH_TYPES),
            ),
        )
    )
    out: dict[str, list[datetime]] = {}
    for root_id, at in rows:
        out.setdefault(root_id, []).append(at)
    return out


def _histories() -> Iterator[tuple[str, list[tuple[datetime, str, str]]]]:
    """Yield each root with its steps (all its contacts'), one root at a time."""
    root = _root().label("root")
    rows = op.get_bind().execute(
        sa.select(root, _steps.c.occurred_at, _steps.c.event_id, _steps.c.stage)
        .select_from(_steps.outerjoin(_contacts, _contacts.c.contact_id == _steps.c.contact_id))
        .order_by(root)
        .execution_options(yield_per=_CHUNK)
    )
    for root_id, group in groupby(rows, key=lambda row: row[0]):
        yield root_id, [(at, event_id, stage) for _, at, event_id, stage in group]


def _micros(delta: Any) -> int:
    return int((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _summarize(
    root: str, steps: list[tuple[datetime, str, str]], touches: list[datetime]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rules of ``services.domain.stages.summarize`` as of this revision, as rows."""
    history: list[tuple[datetime, str, str]] = []
    for step in sorted(steps):
        if not history or history[-1][2] != step[2]:
            history.append(step)
    first: dict[str, int] = {}
    for index, (_, _, stage) in enumerate(history):
        first.setdefault(stage, index)
    rank = {stage: i for i, stage in enumerate(ORDER)}
    entries = []
    for stage in (s for s in ORDER if s in first):
        i, at = first[stage], history[first[stage]][0]
        nxt = next((s for s in history[i + 1 :] if rank.get(s[2], -1) > rank[stage]), None)
        after = history[i + 1][2] if i + 1 < len(history) else None
        entries.append(
            {
                "root_contact_id": root,
                "stage": stage,
                "entered_at": at,
                "next_micros": None if nxt is None else _micros(nxt[0] - at),
                "exit_stage": after if after in EXITS else None,
            }
        )
    if "mql" not in first:
        return entries, []
    i, at = first["mql"], history[first["mql"]][0]
    later = [s[0] for s in history[i + 1 :] if s[2] in RESPONSES][:1]
    responded = min([*later, *(t for t in touches if t >= at)], default=None)
    year, week, _ = at.isocalendar()
    handoff = {
        "root_contact_id": root,
        "mql_at": at,
        "week": f"{year}-W{week:02d}",
        "responded_at": responded,
        "response_micros": None if responded is None else _micros(responded - at),
    }
    return entries, [handoff]


def _write(table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows: COPY on PostgreSQL (timestamps as naive UTC), a bulk insert elsewhere."""
    if not rows:
        return
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        bind.execute(table.insert(), rows)
        return
    names = list(rows[0])
    raw = bind.connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(
                [
                    v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v
                    for v in (row[n] for n in names)
                ]
            )


def _backfill(entries: sa.Table, handoffs: sa.Table) -> None:
    """Write every root's summary rows, as the worker would have."""
    touches = _responses()
    out: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for root, steps in _histories():
        more, handoff = _summarize(root, steps, touches.get(root, []))
        out[0].extend(more)
        out[1].extend(handoff)
        if len(out[0]) >= _CHUNK:
            _write(entries, out[0])
            _write(handoffs, out[1])
            out = ([], [])
    _write(entries, out[0])
    _write(handoffs, out[1])


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_handoffs_responded_at")
        batch_op.drop_index("ix_handoffs_response")
        batch_op.drop_index("ix_handoffs_week_response")
        batch_op.drop_index(batch_op.f("ix_handoffs_mql_at"))
    op.drop_table("handoffs")
    with op.batch_alter_table("contact_stage_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_stage_entries_stage_next")
        batch_op.drop_index("ix_contact_stage_entries_stage_entered")
    op.drop_table("contact_stage_entries")
