"""``POST /v1/webhooks/{provider}``: events pushed by other systems with their own auth.

``generic`` takes canonical events (one, or ``{"events": [...]}``) signed with HMAC-SHA256 of
the raw body under a shared secret: ``X-Closedloop-Signature: sha256=<hex>``. There is no
timestamp in the signature; a replayed request is harmless because events are idempotent by
``event_id``. The CRM providers' own payloads and schemes come with their adapters.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from services.core.http import Problem
from services.ingest.deps import JsonBody, MetricsDep, PublisherDep, SettingsDep
from services.ingest.parsing import parse_events
from services.ingest.publisher import BrokerUnavailable
from services.ingest.schemas import EVENT_BODY_OPENAPI, AcceptedOut, problem_responses

router = APIRouter(tags=["webhooks"])

PLANNED_PROVIDERS = ("hubspot", "pipedrive", "salesforce", "segment")
SIGNATURE_HEADER = "X-Closedloop-Signature"


def sign(secret: str, body: bytes) -> str:
    """Return the signature header value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """Return whether ``header`` is the HMAC-SHA256 of ``body`` under ``secret``."""
    if not header:
        return False
    # Starlette decodes headers as latin-1, so this round-trips any header byte for byte.
    given = header.strip().lower().encode("latin-1")
    return hmac.compare_digest(sign(secret, body).encode(), given)


def provider_secret(provider: str, request: Request) -> str:
    """Return the shared secret of a supported provider: 404 if unsupported, 401 if unset."""
    if provider in PLANNED_PROVIDERS:
        raise Problem(404, "Not Found", f"provider {provider!r} is not supported yet")
    if provider != "generic":
        raise Problem(404, "Not Found", f"unknown webhook provider {provider!r}")
    secret: str | None = request.app.state.webhook_secrets.get(provider)
    if not secret:
        raise Problem(
            401,
            "Unauthorized",
            "no shared secret is configured for this webhook (CLOSEDLOOP_WEBHOOK_SECRET_GENERIC)",
        )
    return secret


ProviderSecret = Annotated[str, Depends(provider_secret)]


@router.post(
    "/v1/webhooks/{provider}",
    status_code=202,
    response_model=AcceptedOut,
    openapi_extra=EVENT_BODY_OPENAPI,
    responses=problem_responses(400, 401, 404, 413, 415, 422, 503),
)
def post_webhook(
    provider: str,
    secret: ProviderSecret,
    body: JsonBody,
    settings: SettingsDep,
    publisher: PublisherDep,
    metrics: MetricsDep,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> AcceptedOut:
    """Publish the signed events of a webhook call, all or nothing, like ``POST /v1/events``."""
    if not signature_matches(secret, body, signature):
        raise Problem(
            401,
            "Unauthorized",
            f"missing or bad {SIGNATURE_HEADER}: expected sha256=<hex HMAC of the body>",
        )
    events = parse_events(body, max_events=settings.max_batch_events)
    endpoint = f"webhook_{provider}"
    try:
        accepted = publisher.publish(events)
    except BrokerUnavailable:
        metrics.publish_failures.labels(endpoint).inc()
        raise
    metrics.accepted.labels(endpoint).inc(accepted)
    return AcceptedOut(accepted=accepted)
