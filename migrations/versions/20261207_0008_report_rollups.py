"""report rollups: what the influence, pipeline and deal funnel reports read

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 09:45:24.757451

The influence report read ``credits`` on every build (seconds at 100k won deals); it now reads
``influence_rollups``, kept by the worker beside the credits. A database that already holds
credits gets its rollup here, summed from the ``linear`` credits and deal attributions as
``services.core.db.rollups.influence_pairs`` defines them, in the migration's transaction.
The pipeline report read every pipeline credit; it now reads their sums per (model, campaign,
stage), written with each snapshot; the stored snapshot's are summed here. The deal funnel
tallied every deal's stage history; it now reads ``deal_stage_entries``, kept by the worker
under the stage order it stores, which needs each stage's first appearance (``deal_stages``,
filled here). The entries are not filled here: the worker's first maintenance pass sees no
stored order and builds them (``services.attribution.deal_funnel``); the report tallies the
histories until then. A dirty deal now says whether one of its own events marked it
(``stages``: only then can its stage history have changed).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.core.db.types

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
    op.create_table(
        "deal_stage_entries",
        sa.Column("deal_id", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=110), nullable=False),
        sa.Column("entered_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("next_micros", sa.BigInteger(), nullable=True),
        sa.Column("exit_stage", sa.String(length=10), nullable=True),
        sa.PrimaryKeyConstraint("deal_id", "stage", name=op.f("pk_deal_stage_entries")),
    )
    with op.batch_alter_table("deal_stage_entries", schema=None) as batch_op:
        batch_op.create_index("ix_deal_stage_entries_stage_entered", ["stage", "entered_at"])
        batch_op.create_index(
            "ix_deal_stage_entries_stage_next",
            ["stage", "next_micros", "entered_at"],
            postgresql_where=sa.text("next_micros IS NOT NULL"),
            sqlite_where=sa.text("next_micros IS NOT NULL"),
        )
    op.create_table(
        "deal_stages",
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("first_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("first_event_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("stage", name=op.f("pk_deal_stages")),
    )
    with op.batch_alter_table("dirty_deals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stages", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    # Each CRM stage's first step: the earliest (occurred_at, event_id) of its rows.
    op.execute(
        "INSERT INTO deal_stages (stage, first_at, first_event_id) SELECT stage, occurred_at, "
        "event_id FROM (SELECT stage, occurred_at, event_id, row_number() OVER (PARTITION BY "
        "stage ORDER BY occurred_at, event_id) AS n FROM deal_stage_changes WHERE kind = "
        "'stage') AS firsts WHERE n = 1"
    )
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
    with op.batch_alter_table("dirty_deals", schema=None) as batch_op:
        batch_op.drop_column("stages")
    op.drop_table("deal_stages")
    with op.batch_alter_table("deal_stage_entries", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_deal_stage_entries_stage_next",
            postgresql_where=sa.text("next_micros IS NOT NULL"),
            sqlite_where=sa.text("next_micros IS NOT NULL"),
        )
        batch_op.drop_index("ix_deal_stage_entries_stage_entered")
    op.drop_table("deal_stage_entries")
    with op.batch_alter_table("pipeline_rollups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_rollups_model_id"))
    op.drop_table("pipeline_rollups")
    with op.batch_alter_table("influence_rollups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_influence_rollups_day"))
    op.drop_table("influence_rollups")
