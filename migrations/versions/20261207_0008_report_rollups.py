"""influence_rollups and pipeline_rollups: what the influence and pipeline reports read

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 09:45:24.757451

The influence report read ``credits`` on every build (seconds at 100k won deals); it now reads
``influence_rollups``, kept by the worker beside the credits. A database that already holds
credits gets its rollup here, summed from the ``linear`` credits and deal attributions as
``services.core.db.rollups.influence_pairs`` defines them, in the migration's transaction.
The pipeline report read every pipeline credit; it now reads their sums per (model, campaign,
stage), written with each snapshot; the stored snapshot's are summed here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "influence_rollups",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("campaign_id", sa.String(length=200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sourced_minor", sa.BigInteger(), nullable=False),
        sa.Column("sourced_deals", sa.BigInteger(), nullable=False),
        sa.Column("influenced_minor", sa.BigInteger(), nullable=False),
        sa.Column("influenced_deals", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_influence_rollups")),
    )
    with op.batch_alter_table("influence_rollups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_influence_rollups_day"), ["day"], unique=False)
    op.create_table(
        "pipeline_rollups",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("campaign_id", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=True),
        sa.Column("credit_minor", sa.BigInteger(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_rollups")),
    )
    with op.batch_alter_table("pipeline_rollups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pipeline_rollups_model_id"), ["model_id"])
    _backfill()
    op.execute(
        "INSERT INTO pipeline_rollups (model_id, campaign_id, stage, credit_minor, weight, "
        "credits) SELECT model_id, campaign_id, stage, sum(credit_minor), sum(weight), "
        "count(*) FROM pipeline_credits GROUP BY model_id, campaign_id, stage"
    )


def _backfill() -> None:
    """One row per (campaign, day): the sums over the (deal, campaign) pairs of ``linear``."""
    credits = sa.table(
        "credits",
        sa.column("model_id"),
        sa.column("deal_id"),
        sa.column("campaign_id"),
        sa.column("roles"),
        sa.column("closed_at"),
    )
    attributions = sa.table(
        "deal_attributions", sa.column("model_id"), sa.column("deal_id"), sa.column("amount_minor")
    )
    if op.get_bind().dialect.name == "sqlite":
        day = sa.func.date(credits.c.closed_at).label("day")
    else:
        day = sa.cast(credits.c.closed_at, sa.Date).label("day")
    holds_lead = sa.case((credits.c.roles.contains("lead_creation"), 1), else_=0)
    pairs = (
        sa.select(
            credits.c.campaign_id,
            day,
            sa.func.max(holds_lead).label("sourced"),
            attributions.c.amount_minor,
        )
        .join(
            attributions,
            (attributions.c.deal_id == credits.c.deal_id) & (attributions.c.model_id == "linear"),
        )
        .where(credits.c.model_id == "linear")
        .group_by(credits.c.deal_id, credits.c.campaign_id, day, attributions.c.amount_minor)
        .subquery("pairs")
    )
    columns = (
        "campaign_id",
        "day",
        "sourced_minor",
        "sourced_deals",
        "influenced_minor",
        "influenced_deals",
    )
    sourced = sa.case((pairs.c.sourced == 1, pairs.c.amount_minor), else_=0)
    op.execute(
        sa.insert(sa.table("influence_rollups", *(sa.column(n) for n in columns))).from_select(
            list(columns),
            sa.select(
                pairs.c.campaign_id,
                pairs.c.day,
                sa.func.sum(sourced),
                sa.func.sum(pairs.c.sourced),
                sa.func.sum(pairs.c.amount_minor),
                sa.func.count(),
            ).group_by(pairs.c.campaign_id, pairs.c.day),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("pipeline_rollups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_rollups_model_id"))
    op.drop_table("pipeline_rollups")
    with op.batch_alter_table("influence_rollups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_influence_rollups_day"))
    op.drop_table("influence_rollups")
