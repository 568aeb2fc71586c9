"""The relational schema of Closed Loop: stored events, derived state, credits, and plumbing.

Layers:
- ``events`` is the source of truth: every accepted event once (``event_id`` is the key).
- ``campaigns``, ``contacts``, ``touches``, ``deals``, ``deal_contacts``, ``fx_rates``,
  ``campaign_costs``, ``campaign_cost_days`` are state derived from the events in
  (``occurred_at``, ``event_id``) order; the worker rebuilds them from ``events``.
- ``lifecycle_changes`` and ``deal_stage_changes`` are the stage histories (one row per event
  that carried a stage or a won/lost status), read by the funnel and SLA reports; written
  once per event (keyed by ``event_id``), so they never depend on arrival order.
- ``contact_stage_entries`` and ``handoffs`` are the funnel and SLA summaries kept per root
  contact from the stage histories (``services.attribution.funnel_summary``).
- ``credits`` and ``deal_attributions`` are the report projection: per model, per deal, per touch
  credits in reporting-currency minor units. For every (model, deal):
  sum(credits.credit_minor) = deal_attributions.attributed_minor, and
  attributed_minor + unattributed_minor = deal's converted amount.
- ``pipeline_credits`` and ``pipeline_deals`` are the pipeline snapshot: open deals credited
  with their journeys cut at the snapshot's time, replaced whole every time it is computed.
- ``accounts`` and ``attributes`` are the firmographic state (contract §1 ``account.upserted``
  and contact ``attributes``): per owner and key the latest value by (``occurred_at``,
  ``event_id``), so they never depend on arrival order; merges are resolved by readers.
- ``lead_definitions``, ``lead_qualifications`` and ``mqls`` are the lead lifecycle (§7): the
  versioned definitions, each account's qualification episodes under a definition, and the
  ``mql`` events the worker emitted for them (also its outbox: ``published_at`` null until the
  broker acknowledged the event).
- ``consumer_offsets``, ``dead_letters``, ``event_conflicts``, ``api_keys``, ``audit_log``,
  ``attribution_models`` are plumbing.
Money columns end in ``_minor`` and are integers of minor units.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.core.db.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(200)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class EventRow(Base):
    """One accepted canonical event, stored once; ``payload`` is its canonical JSON."""

    __tablename__ = "events"

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str | None] = mapped_column(String(50))
    deal_id: Mapped[str | None] = mapped_column(ID, index=True)
    contact_id: Mapped[str | None] = mapped_column(ID, index=True)
    merged_contact_id: Mapped[str | None] = mapped_column(ID, index=True)
    account_id: Mapped[str | None] = mapped_column(ID)
    campaign_id: Mapped[str | None] = mapped_column(ID, index=True)
    payload: Mapped[str] = mapped_column(Text)
    kafka_partition: Mapped[int | None] = mapped_column(Integer)
    kafka_offset: Mapped[int | None] = mapped_column(BigInteger)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CampaignRow(Base):
    __tablename__ = "campaigns"

    campaign_id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    channel: Mapped[str] = mapped_column(String(100), index=True)
    is_sales_sourced: Mapped[bool] = mapped_column(Boolean, default=False)


class CampaignCostRow(Base):
    """One ``campaign.cost`` event; ``reporting_minor`` is null while no fx rate converts it."""

    __tablename__ = "campaign_costs"

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ID, index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    reporting_minor: Mapped[int | None] = mapped_column(BigInteger)


class CampaignCostDayRow(Base):
    """A cost spread evenly over its period's days, in reporting-currency minor units."""

    __tablename__ = "campaign_cost_days"

    cost_event_id: Mapped[str] = mapped_column(
        ID, ForeignKey("campaign_costs.event_id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ID)
    cost_minor: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_campaign_cost_days_day_campaign", "day", "campaign_id"),)


class ContactRow(Base):
    """A contact's latest state; ``root_contact_id`` follows merges to the surviving contact."""

    __tablename__ = "contacts"

    contact_id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str | None] = mapped_column(ID)
    lifecycle_stage: Mapped[str | None] = mapped_column(String(20))
    merged_into: Mapped[str | None] = mapped_column(ID)
    root_contact_id: Mapped[str] = mapped_column(ID, index=True)
    effective_account_id: Mapped[str | None] = mapped_column(ID, index=True)


class AccountRow(Base):
    """An account named by ``account.upserted``: its latest name (with the stamp that set it)."""

    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(500))
    name_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    name_event_id: Mapped[str | None] = mapped_column(ID)


class AttributeRow(Base):
    """One attribute of an account or a contact: the latest value by (occurred_at, event_id).

    ``owner_kind`` is ``account`` or ``contact``; a contact's row is its own (merges are
    resolved by readers through ``contacts.root_contact_id``, latest stamp per key wins).
    """

    __tablename__ = "attributes"

    owner_kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    event_id: Mapped[str] = mapped_column(ID)


class LifecycleChangeRow(Base):
    """A ``contact.upserted`` that carried ``lifecycle_stage``: one step of a contact's history.

    Rows of the same stage in a row are repeats, not changes; readers collapse them after
    ordering by (``occurred_at``, ``event_id``) and grouping by the root contact.
    """

    __tablename__ = "lifecycle_changes"

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    contact_id: Mapped[str] = mapped_column(ID)
    stage: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    __table_args__ = (Index("ix_lifecycle_changes_contact_occurred", "contact_id", "occurred_at"),)


class DealStageChangeRow(Base):
    """A deal event that carried a ``stage`` (``kind`` stage) or closed it (``won``/``lost``).

    For ``won`` and ``lost`` rows ``stage`` repeats the kind; ``deal.reopened`` is not a step.
    """

    __tablename__ = "deal_stage_changes"

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    deal_id: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(10))
    stage: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    __table_args__ = (Index("ix_deal_stage_changes_deal_occurred", "deal_id", "occurred_at"),)


class DealStageRow(Base):
    """A CRM deal stage and its first appearance: the earliest (``occurred_at``, ``event_id``)
    of its ``deal_stage_changes`` rows of kind ``stage`` (the deal funnel's order after the
    configured stages). Kept by the worker with the stage changes."""

    __tablename__ = "deal_stages"

    stage: Mapped[str] = mapped_column(String(100), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    first_event_id: Mapped[str] = mapped_column(ID)


class DealStageEntryRow(Base):
    """A deal's first entry into a funnel stage and what followed it (the deal funnel's rows).

    Kept by the worker (``services.attribution.deal_funnel``) from the deal's whole stage
    history, under the stage order stored in ``system_state`` (``deal_funnel_order``):
    ``stage`` is ``stage:<CRM stage>``, ``won`` or ``lost``; ``next_micros`` the exact time in
    microseconds to the first later step into a stage further along the order, null if none;
    ``exit_stage`` is ``lost`` when the step right after entering was the loss, else null.
    """

    __tablename__ = "deal_stage_entries"

    deal_id: Mapped[str] = mapped_column(ID, primary_key=True)
    stage: Mapped[str] = mapped_column(String(110), primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_micros: Mapped[int | None] = mapped_column(BigInteger)
    exit_stage: Mapped[str | None] = mapped_column(String(10))

    __table_args__ = (
        Index("ix_deal_stage_entries_stage_entered", "stage", "entered_at"),
        # The converted entries of a stage in order of time to next (the exact medians).
        Index(
            "ix_deal_stage_entries_stage_next",
            "stage",
            "next_micros",
            "entered_at",
            postgresql_where=text("next_micros IS NOT NULL"),
            sqlite_where=text("next_micros IS NOT NULL"),
        ),
    )


class TouchRow(Base):
    __tablename__ = "touches"

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    campaign_id: Mapped[str] = mapped_column(ID, index=True)
    contact_id: Mapped[str | None] = mapped_column(ID, index=True)
    account_id: Mapped[str | None] = mapped_column(ID, index=True)
    touch_type: Mapped[str | None] = mapped_column(String(100))
    lead_created: Mapped[bool] = mapped_column(Boolean, default=False)


class DealRow(Base):
    """A deal's state derived from its events (contract §1).

    ``status`` is open, won or lost. For a won deal ``reporting_minor`` is its amount converted
    once into the reporting currency at its close date, or null when no rate converts it
    (``conversion`` = 'unconverted').
    """

    __tablename__ = "deals"

    deal_id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str | None] = mapped_column(ID, index=True)
    status: Mapped[str] = mapped_column(String(10), index=True)
    stage: Mapped[str | None] = mapped_column(String(100))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    lost_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reporting_minor: Mapped[int | None] = mapped_column(BigInteger)
    fx_rate: Mapped[str | None] = mapped_column(String(60))
    fx_rate_date: Mapped[date | None] = mapped_column(Date)
    conversion: Mapped[str | None] = mapped_column(String(20))
    journey_touches: Mapped[int] = mapped_column(Integer, default=0)


class DealContactRow(Base):
    __tablename__ = "deal_contacts"

    deal_id: Mapped[str] = mapped_column(
        ID, ForeignKey("deals.deal_id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[str] = mapped_column(ID, primary_key=True, index=True)


class FxRateRow(Base):
    """The latest ``fx.rate`` per (date, base, quote): 1 base = rate quote."""

    __tablename__ = "fx_rates"

    rate_date: Mapped[date] = mapped_column(Date, primary_key=True)
    base: Mapped[str] = mapped_column(String(3), primary_key=True)
    quote: Mapped[str] = mapped_column(String(3), primary_key=True)
    rate: Mapped[str] = mapped_column(String(60))
    # The version that won: the latest (occurred_at, event_id) for this key.
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    event_id: Mapped[str] = mapped_column(ID)


class AttributionModelRow(Base):
    """An attribution model definition; built-ins are written by the worker at start-up."""

    __tablename__ = "attribution_models"

    model_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    params: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    builtin: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Custom models are computed for every deal in the background: ready | computing.
    status: Mapped[str] = mapped_column(String(20), default="ready")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)


class ModelFitRow(Base):
    """A versioned fit of a data-driven model (markov, shapley): its inputs and its results.

    ``status`` is requested (by the API or the schedule), applying (fitted; its credits are
    being written, ``progress_done`` of ``progress_total`` deals so far), done (every credit
    of the model uses it), or failed. The latest done fit is the model's current snapshot;
    ``deal_attributions.fit_id`` says which snapshot each deal's credits used.
    """

    __tablename__ = "model_fits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(20))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    fitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    params: Mapped[str] = mapped_column(Text, default="{}")
    inputs: Mapped[str] = mapped_column(Text, default="{}")
    results: Mapped[str] = mapped_column(Text, default="{}")
    error: Mapped[str | None] = mapped_column(Text)
    # While ``status`` is applying: deals whose credits already use this snapshot, of all.
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)


class CreditRow(Base):
    """One touch's credit for one won deal under one model, in reporting minor units."""

    __tablename__ = "credits"

    model_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    deal_id: Mapped[str] = mapped_column(ID, primary_key=True)
    touch_event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[str] = mapped_column(ID)
    roles: Mapped[str] = mapped_column(String(100))
    weight: Mapped[float] = mapped_column(Float)
    credit_minor: Mapped[int] = mapped_column(BigInteger)
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_credits_model_closed", "model_id", "closed_at"),
        Index("ix_credits_deal", "deal_id"),
    )


class DealAttributionRow(Base):
    """Per (model, won and converted deal): attributed + unattributed = reporting amount."""

    __tablename__ = "deal_attributions"

    model_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    deal_id: Mapped[str] = mapped_column(ID, primary_key=True, index=True)
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    attributed_minor: Mapped[int] = mapped_column(BigInteger)
    unattributed_minor: Mapped[int] = mapped_column(BigInteger)
    fit_id: Mapped[int | None] = mapped_column(Integer)  # data-driven models: the snapshot used

    __table_args__ = (Index("ix_deal_attributions_model_closed", "model_id", "closed_at"),)


class PipelineCreditRow(Base):
    """One touch's credit for one open deal under one model, in the latest pipeline snapshot.

    The whole table is replaced at once by the worker (``services.attribution.pipeline``); per
    (model, deal) the credits sum to the deal's ``pipeline_deals.reporting_minor``.
    """

    __tablename__ = "pipeline_credits"

    model_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    deal_id: Mapped[str] = mapped_column(ID, primary_key=True)
    touch_event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ID)
    stage: Mapped[str | None] = mapped_column(String(100))
    credit_minor: Mapped[int] = mapped_column(BigInteger)
    weight: Mapped[float] = mapped_column(Float)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_pipeline_credits_model_campaign", "model_id", "campaign_id"),)


class PipelineDealRow(Base):
    """An open deal with an amount in the latest pipeline snapshot.

    ``reporting_minor`` is its amount converted at the latest rate on or before the snapshot's
    day, or null when no rate converts it (``conversion`` = 'unconverted'); a converted deal
    with ``journey_touches`` = 0 is unattributed pipeline.
    """

    __tablename__ = "pipeline_deals"

    deal_id: Mapped[str] = mapped_column(ID, primary_key=True)
    stage: Mapped[str | None] = mapped_column(String(100))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reporting_minor: Mapped[int | None] = mapped_column(BigInteger)
    conversion: Mapped[str] = mapped_column(String(20))
    journey_touches: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


ROLLUP_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys


class PipelineRollupRow(Base):
    """The latest pipeline snapshot's credits summed per (model, campaign, stage).

    Written with the snapshot, in its transaction (``services.attribution.pipeline``): per key
    the sum of the ``pipeline_credits`` rows' credits and their weights (``math.fsum``), and
    how many rows. The pipeline report reads these instead of every credit row.
    """

    __tablename__ = "pipeline_rollups"

    id: Mapped[int] = mapped_column(ROLLUP_ID, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(String(100), index=True)
    campaign_id: Mapped[str] = mapped_column(ID)
    stage: Mapped[str | None] = mapped_column(String(100))
    credit_minor: Mapped[int] = mapped_column(BigInteger)
    weight: Mapped[float] = mapped_column(Float)
    credits: Mapped[int] = mapped_column(BigInteger)


class ConsumerOffsetRow(Base):
    """The next offset to consume per partition, written in the same transaction as its effects."""

    __tablename__ = "consumer_offsets"

    topic: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)


class DeadLetterRow(Base):
    """A record the worker could not decode or validate, kept with its coordinates and bytes."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(200))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retried_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # A replayed batch must not record the same poison record twice.
    __table_args__ = (UniqueConstraint("topic", "partition", "offset"),)


class SystemStateRow(Base):
    """Small named facts about the projection, e.g. the attribution parameters it was built with."""

    __tablename__ = "system_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKeyRow(Base):
    """An API key, stored as the SHA-256 of the (high-entropy) secret; shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    key_prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditLogRow(Base):
    """One admin action (key created or revoked, model defined, fit requested, ...), kept forever.

    ``key_id``/``key_name`` say who (null for the CLI, which acts as the machine's operator);
    ``detail`` is a JSON object with what changed.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    key_id: Mapped[int | None] = mapped_column(Integer)
    key_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(300))
    detail: Mapped[str] = mapped_column(Text, default="{}")


class EventConflictRow(Base):
    """A later copy of a stored ``event_id`` with different content (contract §1).

    The stored event stays; each distinct conflicting payload is recorded once (a replayed
    batch adds nothing), with where it first arrived and how many copies of it arrived.
    """

    __tablename__ = "event_conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ID, index=True)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    stored_payload: Mapped[str] = mapped_column(Text)
    kafka_partition: Mapped[int | None] = mapped_column(Integer)
    kafka_offset: Mapped[int | None] = mapped_column(BigInteger)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    copies: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (UniqueConstraint("event_id", "payload_sha256"),)


class LeadDefinitionRow(Base):
    """One version of a named lead definition (contract §7); versions are never changed.

    ``rule`` is JSON: ``min_score``, ``min_grade``, ``required_attributes``,
    ``sales_ready_stages``. The active definition's id is ``system_state`` key
    ``active_lead_definition``; its latest version is the one in force.
    """

    __tablename__ = "lead_definitions"

    definition_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))


class LeadQualificationRow(Base):
    """An episode of an account meeting a lead definition: from ``qualified_at`` to ``ended_at``.

    At most one open episode (``ended_at`` null) per (definition, account); a later episode
    after the account stopped meeting the definition has the next ``episode`` number.
    """

    __tablename__ = "lead_qualifications"

    definition_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    episode: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    qualified_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    score: Mapped[float | None] = mapped_column(Float)
    grade: Mapped[str | None] = mapped_column(String(2))
    raw_grade: Mapped[float | None] = mapped_column(Float)


class MqlRow(Base):
    """A ``contact.upserted`` to ``mql`` the worker emitted for a qualification (and its outbox).

    ``event_id`` is derived from (definition, account, episode, contact), so an evaluation
    repeated after a crash finds the row and emits nothing new; the event re-published after
    a crash before ``published_at`` was set is a duplicate the store ignores.
    """

    __tablename__ = "mqls"

    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    contact_id: Mapped[str] = mapped_column(ID)
    account_id: Mapped[str] = mapped_column(ID)
    definition_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    episode: Mapped[int] = mapped_column(Integer)
    qualified_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    payload: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class ContactStageEntryRow(Base):
    """A root contact's first entry into a funnel stage and what followed it (the funnel's rows).

    Kept by the worker (``services.attribution.funnel_summary``) from the root's whole stage
    history: ``next_micros`` is the exact time in microseconds to the first later step into a
    stage further along, null if none; ``exit_stage`` is ``recycled`` / ``disqualified`` when
    the step right after entering was that exit, else null.
    """

    __tablename__ = "contact_stage_entries"

    root_contact_id: Mapped[str] = mapped_column(ID, primary_key=True)
    stage: Mapped[str] = mapped_column(String(20), primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_micros: Mapped[int | None] = mapped_column(BigInteger)
    exit_stage: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (
        Index("ix_contact_stage_entries_stage_entered", "stage", "entered_at"),
        # The converted entries of a stage in order of time to next (the exact medians).
        Index(
            "ix_contact_stage_entries_stage_next",
            "stage",
            "next_micros",
            "entered_at",
            postgresql_where=text("next_micros IS NOT NULL"),
            sqlite_where=text("next_micros IS NOT NULL"),
        ),
    )


class HandoffRow(Base):
    """A root contact's first entry into ``mql`` and its first sales response (the SLA's rows).

    Kept by the worker like ``contact_stage_entries``. ``week`` is the ISO week (UTC) of
    ``mql_at`` like ``2026-W10``; ``responded_at`` is the first response at any time (null if
    none is stored) and ``response_micros`` the exact microseconds from ``mql_at`` to it.
    """

    __tablename__ = "handoffs"

    root_contact_id: Mapped[str] = mapped_column(ID, primary_key=True)
    mql_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    week: Mapped[str] = mapped_column(String(10))
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    response_micros: Mapped[int | None] = mapped_column(BigInteger)

    # The answered hand-offs in order of response time, per week and overall (exact medians
    # and percentiles by rank); they carry what the report filters on, so a walk reads no rows.
    __table_args__ = (
        Index(
            "ix_handoffs_week_response",
            "week",
            "response_micros",
            postgresql_include=["mql_at", "responded_at"],
            postgresql_where=text("response_micros IS NOT NULL"),
            sqlite_where=text("response_micros IS NOT NULL"),
        ),
        Index(
            "ix_handoffs_response",
            "response_micros",
            postgresql_include=["mql_at", "responded_at"],
            postgresql_where=text("response_micros IS NOT NULL"),
            sqlite_where=text("response_micros IS NOT NULL"),
        ),
        # The next first response after a moment (how long an SLA answer stays the same).
        Index("ix_handoffs_responded_at", "responded_at", postgresql_include=["mql_at"]),
    )


# --- Scale-out: the work queues between a batch's commit and its credits, and the rollups ---


class ProjectionVersionRow(Base):
    """One writer process's commit counter; the projection version is the sum over writers.

    Each writer increments only its own row, so concurrent writers never wait on one another
    for it, and the sum grows with every commit that changes the projection
    (``services.core.db.version``).
    """

    __tablename__ = "projection_versions"

    writer: Mapped[str] = mapped_column(String(64), primary_key=True)
    counter: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PendingImpactRow(Base):
    """A committed batch's impact (what it touched), waiting to be resolved into dirty deals.

    Written in the batch's transaction, resolved after its commit against committed state
    (``services.attribution.dirty``).
    """

    __tablename__ = "pending_impacts"

    id: Mapped[int] = mapped_column(ROLLUP_ID, primary_key=True, autoincrement=True)
    impact: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DirtyDealRow(Base):
    """A deal whose state and credits must be recomputed from committed events."""

    __tablename__ = "dirty_deals"

    deal_id: Mapped[str] = mapped_column(ID, primary_key=True)
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # Whether one of the deal's own events is among the changes (its stage history may have
    # changed: its deal funnel entries are rewritten too), not only a touch, rate or merge.
    stages: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)


class DirtyRootRow(Base):
    """A root contact whose funnel and SLA summaries must be rewritten from committed events."""

    __tablename__ = "dirty_roots"

    root_contact_id: Mapped[str] = mapped_column(ID, primary_key=True)
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class CreditRollupRow(Base):
    """Additive deltas of ``credits`` per (model, campaign, UTC day of close).

    Append-only: a recompute adds (new - old) rows, never updates one, so writers never wait
    on each other; summing the rows of a key gives the credits' sums exactly (revenue) or to
    float rounding (deals, the sum of weights). Compacted by maintenance.
    """

    __tablename__ = "credit_rollups"

    id: Mapped[int] = mapped_column(ROLLUP_ID, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(String(100))
    campaign_id: Mapped[str] = mapped_column(ID)
    day: Mapped[date] = mapped_column(Date)
    revenue_minor: Mapped[int] = mapped_column(BigInteger)
    deals: Mapped[float] = mapped_column(Float)
    # The number of credit rows: a key whose credits all went away (0) is told apart from one
    # whose credits are all 0 (touches of weight 0 still make a report row).
    credits: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_credit_rollups_model_day", "model_id", "day"),)


class AttributionRollupRow(Base):
    """Additive deltas of ``deal_attributions`` per (model, UTC day of close, fit)."""

    __tablename__ = "attribution_rollups"

    id: Mapped[int] = mapped_column(ROLLUP_ID, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(String(100))
    day: Mapped[date] = mapped_column(Date)
    fit_id: Mapped[int | None] = mapped_column(BigInteger)
    deals: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    attributed_minor: Mapped[int] = mapped_column(BigInteger)
    unattributed_minor: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_attribution_rollups_model_day", "model_id", "day"),)


class WonRollupRow(Base):
    """Additive deltas of the won deals per (UTC day of close, conversion, currency)."""

    __tablename__ = "won_rollups"

    id: Mapped[int] = mapped_column(ROLLUP_ID, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    conversion: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str | None] = mapped_column(String(3))
    deals: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    reporting_minor: Mapped[int] = mapped_column(BigInteger)


class InfluenceRollupRow(Base):
    """Additive deltas of the influence counts per (campaign, UTC day of close).

    Summarises the (deal, campaign) pairs of the won deals' ``linear`` journeys
    (``services.domain.rollup.INFLUENCE``): sourced and influenced revenue and deals.
    """

    __tablename__ = "influence_rollups"

    id: Mapped[int] = mapped_column(ROLLUP_ID, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ID)
    day: Mapped[date] = mapped_column(Date, index=True)
    sourced_minor: Mapped[int] = mapped_column(BigInteger)
    sourced_deals: Mapped[int] = mapped_column(BigInteger)
    influenced_minor: Mapped[int] = mapped_column(BigInteger)
    influenced_deals: Mapped[int] = mapped_column(BigInteger)
