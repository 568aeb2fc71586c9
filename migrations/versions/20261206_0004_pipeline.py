"""pipeline: pipeline_credits and pipeline_deals, the worker's snapshot of open deals

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 17:16:39.562460

Both tables start empty: the worker fills them at its first maintenance pass (the pipeline
report answers ``as_of: null`` until then), so nothing is backfilled here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.core.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_credits",
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("deal_id", sa.String(length=200), nullable=False),
        sa.Column("touch_event_id", sa.String(length=200), nullable=False),
        sa.Column("campaign_id", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=True),
        sa.Column("credit_minor", sa.BigInteger(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("computed_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "model_id", "deal_id", "touch_event_id", name=op.f("pk_pipeline_credits")
        ),
    )
    with op.batch_alter_table("pipeline_credits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pipeline_credits_model_campaign", ["model_id", "campaign_id"], unique=False
        )

    op.create_table(
        "pipeline_deals",
        sa.Column("deal_id", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reporting_minor", sa.BigInteger(), nullable=True),
        sa.Column("conversion", sa.String(length=20), nullable=False),
        sa.Column("journey_touches", sa.Integer(), nullable=False),
        sa.Column("computed_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("deal_id", name=op.f("pk_pipeline_deals")),
    )


def downgrade() -> None:
    op.drop_table("pipeline_deals")
    with op.batch_alter_table("pipeline_credits", schema=None) as batch_op:
        batch_op.drop_index("ix_pipeline_credits_model_campaign")

    op.drop_table("pipeline_credits")
