"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 15:34:08.053536
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.core.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_prefix", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", services.core.db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "attribution_models",
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("progress_done", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_attribution_models")),
    )
    op.create_table(
        "campaign_costs",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("campaign_id", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("reporting_minor", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_campaign_costs")),
    )
    with op.batch_alter_table("campaign_costs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_costs_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "campaigns",
        sa.Column("campaign_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("is_sales_sourced", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaigns_channel"), ["channel"], unique=False)

    op.create_table(
        "consumer_offsets",
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition", name=op.f("pk_consumer_offsets")),
    )
    op.create_table(
        "contacts",
        sa.Column("contact_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=True),
        sa.Column("lifecycle_stage", sa.String(length=20), nullable=True),
        sa.Column("merged_into", sa.String(length=200), nullable=True),
        sa.Column("root_contact_id", sa.String(length=200), nullable=False),
        sa.Column("effective_account_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_contacts")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contacts_effective_account_id"), ["effective_account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_contacts_root_contact_id"), ["root_contact_id"], unique=False
        )

    op.create_table(
        "credits",
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("deal_id", sa.String(length=200), nullable=False),
        sa.Column("touch_event_id", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.String(length=100), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("credit_minor", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "deal_id", "touch_event_id", name=op.f("pk_credits")),
    )
    with op.batch_alter_table("credits", schema=None) as batch_op:
        batch_op.create_index("ix_credits_deal", ["deal_id"], unique=False)
        batch_op.create_index("ix_credits_model_closed", ["model_id", "closed_at"], unique=False)

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("retried_at", services.core.db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("topic", "partition", "offset", name=op.f("uq_dead_letters_topic")),
    )
    op.create_table(
        "deal_attributions",
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("deal_id", sa.String(length=200), nullable=False),
        sa.Column("closed_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("attributed_minor", sa.BigInteger(), nullable=False),
        sa.Column("unattributed_minor", sa.BigInteger(), nullable=False),
        sa.Column("fit_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("model_id", "deal_id", name=op.f("pk_deal_attributions")),
    )
    with op.batch_alter_table("deal_attributions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deal_attributions_deal_id"), ["deal_id"], unique=False)
        batch_op.create_index(
            "ix_deal_attributions_model_closed", ["model_id", "closed_at"], unique=False
        )

    op.create_table(
        "deals",
        sa.Column("deal_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("created_at", services.core.db.types.UTCDateTime(), nullable=True),
        sa.Column("closed_at", services.core.db.types.UTCDateTime(), nullable=True),
        sa.Column("lost_at", services.core.db.types.UTCDateTime(), nullable=True),
        sa.Column("reporting_minor", sa.BigInteger(), nullable=True),
        sa.Column("fx_rate", sa.String(length=60), nullable=True),
        sa.Column("fx_rate_date", sa.Date(), nullable=True),
        sa.Column("conversion", sa.String(length=20), nullable=True),
        sa.Column("journey_touches", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("deal_id", name=op.f("pk_deals")),
    )
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deals_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deals_closed_at"), ["closed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_deals_status"), ["status"], unique=False)

    op.create_table(
        "events",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=True),
        sa.Column("deal_id", sa.String(length=200), nullable=True),
        sa.Column("contact_id", sa.String(length=200), nullable=True),
        sa.Column("merged_contact_id", sa.String(length=200), nullable=True),
        sa.Column("account_id", sa.String(length=200), nullable=True),
        sa.Column("campaign_id", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=True),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=True),
        sa.Column("stored_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_deal_id"), ["deal_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_events_merged_contact_id"), ["merged_contact_id"], unique=False
        )

    op.create_table(
        "fx_rates",
        sa.Column("rate_date", sa.Date(), nullable=False),
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("quote", sa.String(length=3), nullable=False),
        sa.Column("rate", sa.String(length=60), nullable=False),
        sa.Column("occurred_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("rate_date", "base", "quote", name=op.f("pk_fx_rates")),
    )
    op.create_table(
        "model_fits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("fitted_at", services.core.db.types.UTCDateTime(), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_fits")),
    )
    with op.batch_alter_table("model_fits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_fits_model_id"), ["model_id"], unique=False)

    op.create_table(
        "system_state",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_system_state")),
    )
    op.create_table(
        "touches",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", services.core.db.types.UTCDateTime(), nullable=False),
        sa.Column("campaign_id", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.String(length=200), nullable=True),
        sa.Column("account_id", sa.String(length=200), nullable=True),
        sa.Column("touch_type", sa.String(length=100), nullable=True),
        sa.Column("lead_created", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_touches")),
    )
    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_touches_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_touches_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_touches_contact_id"), ["contact_id"], unique=False)

    op.create_table(
        "campaign_cost_days",
        sa.Column("cost_event_id", sa.String(length=200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("campaign_id", sa.String(length=200), nullable=False),
        sa.Column("cost_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cost_event_id"],
            ["campaign_costs.event_id"],
            name=op.f("fk_campaign_cost_days_cost_event_id_campaign_costs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cost_event_id", "day", name=op.f("pk_campaign_cost_days")),
    )
    with op.batch_alter_table("campaign_cost_days", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_cost_days_day_campaign", ["day", "campaign_id"], unique=False
        )

    op.create_table(
        "deal_contacts",
        sa.Column("deal_id", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["deals.deal_id"],
            name=op.f("fk_deal_contacts_deal_id_deals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deal_id", "contact_id", name=op.f("pk_deal_contacts")),
    )
    with op.batch_alter_table("deal_contacts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deal_contacts_contact_id"), ["contact_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deal_contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deal_contacts_contact_id"))

    op.drop_table("deal_contacts")
    with op.batch_alter_table("campaign_cost_days", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_cost_days_day_campaign")

    op.drop_table("campaign_cost_days")
    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_touches_contact_id"))
        batch_op.drop_index(batch_op.f("ix_touches_campaign_id"))
        batch_op.drop_index(batch_op.f("ix_touches_account_id"))

    op.drop_table("touches")
    op.drop_table("system_state")
    with op.batch_alter_table("model_fits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_fits_model_id"))

    op.drop_table("model_fits")
    op.drop_table("fx_rates")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_merged_contact_id"))
        batch_op.drop_index(batch_op.f("ix_events_deal_id"))
        batch_op.drop_index(batch_op.f("ix_events_contact_id"))
        batch_op.drop_index(batch_op.f("ix_events_campaign_id"))

    op.drop_table("events")
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deals_status"))
        batch_op.drop_index(batch_op.f("ix_deals_closed_at"))
        batch_op.drop_index(batch_op.f("ix_deals_account_id"))

    op.drop_table("deals")
    with op.batch_alter_table("deal_attributions", schema=None) as batch_op:
        batch_op.drop_index("ix_deal_attributions_model_closed")
        batch_op.drop_index(batch_op.f("ix_deal_attributions_deal_id"))

    op.drop_table("deal_attributions")
    op.drop_table("dead_letters")
    with op.batch_alter_table("credits", schema=None) as batch_op:
        batch_op.drop_index("ix_credits_model_closed")
        batch_op.drop_index("ix_credits_deal")

    op.drop_table("credits")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_root_contact_id"))
        batch_op.drop_index(batch_op.f("ix_contacts_effective_account_id"))

    op.drop_table("contacts")
    op.drop_table("consumer_offsets")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaigns_channel"))

    op.drop_table("campaigns")
    with op.batch_alter_table("campaign_costs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_costs_campaign_id"))

    op.drop_table("campaign_costs")
    op.drop_table("attribution_models")
    op.drop_table("api_keys")
