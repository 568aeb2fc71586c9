"""Settings shared by every service, read from ``CLOSEDLOOP_*`` environment variables and ``.env``.

Defaults are the embedded ones (a SQLite file and the bundled broker on loopback), so
``closedloop up`` needs no environment at all. ``DATABASE_URL`` and
``KAFKA_BOOTSTRAP_SERVERS`` are also accepted without the prefix, as the contract names them.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.money import check_currency


class Settings(BaseSettings):
    """Configuration of Closed Loop; pass it explicitly to ``create_app`` and ``run``."""

    model_config = SettingsConfigDict(
        env_prefix="CLOSEDLOOP_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(
        default="sqlite:///closedloop.db",
        validation_alias=AliasChoices("CLOSEDLOOP_DATABASE_URL", "DATABASE_URL", "database_url"),
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_BOOTSTRAP_SERVERS",
            "kafka_bootstrap_servers",
        ),
    )
    events_topic: str = "closedloop.events"
    dead_letter_topic: str = "closedloop.dead-letters"
    topic_partitions: int = 6
    consumer_group: str = "closedloop-attribution"
    # The bundled broker joins a group in about half the session timeout: keep it short.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000
    kafka_request_timeout_ms: int = 10000
    publish_timeout_s: float = 10.0

    # Every library's INFO log and the HTTP access log (``closedloop up --verbose``).
    verbose: bool = False

    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8001
    # Processes serving ingest on its port (each validates and publishes on its own core).
    ingest_workers: int = Field(default=1, ge=1, le=64)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_body_bytes: int = 10 * 1024 * 1024
    max_batch_events: int = 5000

    lookback_days: int = Field(default=180, ge=0, le=3650)
    half_life_days: float = Field(default=7.0, gt=0, le=3650)
    reporting_currency: str = "USD"

    markov_order: int = Field(default=1, ge=1, le=4)
    # Data-driven models are refitted on this schedule when new decided deals exist.
    fit_interval_s: float = Field(default=600.0, gt=0)
    # The pipeline snapshot (open deals credited, journeys cut at now) is recomputed this often
    # when the projection changed since the last one, and once soon after the worker starts.
    pipeline_interval_s: float = Field(default=60.0, gt=0)
    # The grade (contract §7) smooths each attribute value's win rate with a Beta prior
    # centred on the base rate, worth this many deals; refitted with the data-driven models.
    grade_prior_strength: float = Field(default=10.0, gt=0, le=10_000)
    # Open accounts are checked against the active lead definition this often (MQL emission).
    lead_interval_s: float = Field(default=30.0, gt=0)
    worker_max_poll_records: int = 2000
    # One transaction takes about this many bytes of record values (~2,000 events).
    worker_batch_bytes: int = Field(default=750_000, ge=1)
    worker_poll_timeout_ms: int = 500
    # How long a service trusts a key lookup: a revoked or expired key stops working within
    # this many seconds (bounded, so "within seconds" stays true whatever is configured).
    api_key_cache_s: float = Field(default=5.0, ge=0.0, le=5.0)
    # Webhook credentials (contract §6). A provider whose setting is unset refuses every
    # request (401 naming the setting); several secrets, comma-separated, allow rotation.
    # generic: Standard Webhooks secrets (``whsec_<base64>``); the legacy
    # ``X-Closedloop-Signature`` (hex HMAC-SHA256 of the body) uses the same strings.
    webhook_secret_generic: str | None = None
    # HubSpot: the app's client secret (signature v3).
    webhook_secret_hubspot: str | None = None
    # Pipedrive: ``user:password`` as set in the webhook's HTTP auth (comma-separated pairs).
    webhook_basic_pipedrive: str | None = None
    # Salesforce: organization ids allowed to send Outbound Messages (15 or 18 characters).
    salesforce_org_ids: str | None = None
    # Segment: the webhook destination's shared secret (``X-Signature``).
    webhook_secret_segment: str | None = None
    # The public base URL providers call (HubSpot signs the full URL); default: the request's.
    ingest_public_url: str | None = None
    # A signed timestamp older or newer than this is refused as stale (HubSpot, generic).
    webhook_tolerance_s: int = Field(default=300, ge=1, le=3600)
    # HubSpot pipeline stage ids that mean won / lost (comma-separated; custom pipelines
    # use numeric ids), and the currency of deal amounts (HubSpot sends none with a change).
    hubspot_won_stages: str = "closedwon"
    hubspot_lost_stages: str = "closedlost"
    hubspot_currency: str | None = None

    # Per-credential token bucket on ingest and webhooks: requests a second, and the burst.
    rate_limit_per_s: float = Field(default=2000.0, gt=0)
    rate_limit_burst: int = Field(default=4000, ge=1)

    # The deal funnel's stage order (comma-separated stage names); stages not listed follow
    # in the order they first appear. Unset: every stage in order of first appearance.
    deal_stage_order: str = ""
    # The marketing-to-sales hand-off SLA: hours from becoming MQL to a sales response.
    sla_hours: float = Field(default=24.0, gt=0, le=24 * 365)

    @field_validator("reporting_currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        return check_currency(value.upper())

    @field_validator("hubspot_currency")
    @classmethod
    def _known_deal_currency(cls, value: str | None) -> str | None:
        return None if value is None else check_currency(value.upper())
