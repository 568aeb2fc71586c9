"""stage_history: lifecycle_changes and deal_stage_changes, backfilled from stored events

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 16:55:29.812890

The worker writes one row per event that carries a lifecycle stage, a deal stage, or a won /
lost status, in the transaction that stores the event. A database that already holds events
gets the same rows here, read from the events' stored canonical payloads (plain JSON, so this
revision does not depend on the event classes of later versions).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

import services.core.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CHUNK = 5000
_TYPES = ("contact.upserted", "deal.created", "deal.updated", "deal.closed_won", "deal.closed_lost")
_events = sa.table(
    "events",
    sa.column("event_id", sa.String()),
    sa.column("type", sa.String()),
    sa.column("occurred_at", services.core.db.types.UTCDateTime()),
    sa.column("payload", sa.Text()),
)


def upgrade() -> None:
    lifecycle = op.create_table(
        "lifecycle_changes",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("occurred_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_lifecycle_changes")),
    )
    with op.batch_alter_table("lifecycle_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_lifecycle_changes_contact_occurred", ["contact_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_lifecycle_changes_occurred_at"), ["occurred_at"], unique=False
        )

    deal_stages = op.create_table(
        "deal_stage_changes",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("deal_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_deal_stage_changes")),
    )
    with op.batch_alter_table("deal_stage_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deal_stage_changes_deal_occurred", ["deal_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_deal_stage_changes_occurred_at"), ["occurred_at"], unique=False
        )

    _backfill(lifecycle, deal_stages)


def _stored_events() -> Iterator[list[Any]]:
    """Yield the stored events of the stage-carrying types in chunks, by event_id."""
    bind = op.get_bind()
    after = ""
    while True:
        rows = list(
            bind.execute(
                sa.select(
                    _events.c.event_id, _events.c.type, _events.c.occurred_at, _events.c.payload
                )
                .where(_events.c.type.in_(_TYPES), _events.c.event_id > after)
                .order_by(_events.c.event_id)
                .limit(_CHUNK)
            )
        )
        if not rows:
            return
        yield rows
        after = rows[-1].event_id


def _backfill(lifecycle: sa.Table, deal_stages: sa.Table) -> None:
    """Write the history rows of every stored event, as the worker would have."""
    bind = op.get_bind()
    for rows in _stored_events():
        contacts: list[dict[str, Any]] = []
        deals: list[dict[str, Any]] = []
        for event_id, kind, occurred_at, payload in rows:
            body = json.loads(payload)
            base = {"event_id": event_id, "occurred_at": occurred_at}
            if kind == "contact.upserted":
                if body.get("lifecycle_stage"):
                    contacts.append(
                        base | {"contact_id": body["contact_id"], "stage": body["lifecycle_stage"]}
                    )
            elif kind in ("deal.closed_won", "deal.closed_lost"):
                outcome = "won" if kind == "deal.closed_won" else "lost"
                deals.append(base | {"deal_id": body["deal_id"], "kind": outcome, "stage": outcome})
            elif body.get("stage"):
                deals.append(
                    base | {"deal_id": body["deal_id"], "kind": "stage", "stage": body["stage"]}
                )
        if contacts:
            bind.execute(lifecycle.insert(), contacts)
        if deals:
            bind.execute(deal_stages.insert(), deals)


def downgrade() -> None:
    with op.batch_alter_table("lifecycle_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lifecycle_changes_occurred_at"))
        batch_op.drop_index("ix_lifecycle_changes_contact_occurred")
    op.drop_table("lifecycle_changes")
    with op.batch_alter_table("deal_stage_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deal_stage_changes_occurred_at"))
        batch_op.drop_index("ix_deal_stage_changes_deal_occurred")
    op.drop_table("deal_stage_changes")
