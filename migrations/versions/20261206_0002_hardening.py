"""hardening: audit log, event conflicts, key expiry, fit progress

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 13:18:57.023961
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.core.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    op.create_table(
        "event_conflicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("stored_payload", sa.Text(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=True),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=True),
        sa.Column("first_seen_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("copies", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_conflicts")),
        sa.UniqueConstraint("event_id", "payload_sha256", name=op.f("uq_event_conflicts_event_id")),
    )
    with op.batch_alter_table("event_conflicts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_conflicts_event_id"), ["event_id"], unique=False)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", services.core.db.types.UTCDateTime(), nullable=True)
        )

    with op.batch_alter_table("model_fits", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("progress_done", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("progress_total", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("model_fits", schema=None) as batch_op:
        batch_op.drop_column("progress_total")
        batch_op.drop_column("progress_done")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("expires_at")

    with op.batch_alter_table("event_conflicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_conflicts_event_id"))

    op.drop_table("event_conflicts")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
