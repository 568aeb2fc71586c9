"""``POST /v1/webhooks/{provider}``: events pushed by other systems with their own auth.

``generic`` takes canonical events (one, or ``{"events": [...]}``) signed with HMAC-SHA256 of
the raw body under a shared secret: ``X-Closedloop-Signature: sha256=<hex>``. There is no
timestamp in the signature; a replayed request is harmless because events are idempotent by
``event_id``. The CRM providers' own payloads and schemes come with their adapters.

Webhook senders post one event per request, so this route is a per-request hot path
(``bench/webhooks.py``). Measured here, FastAPI costs about 10 µs per dependency, 20 µs for a
``Header`` parameter, and a threadpool hop far more under load, so the route resolves one
dependency (``WebhookCall``: secret, body, signature and the app's collaborators), checks and
validates a small body on the event loop, and leaves the loop only to wait for the broker.
The 202 still comes only after the broker acknowledged every event.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from services.core.http import Problem
from services.core.settings import Settings
from services.ingest.deps import read_json_body
from services.ingest.metrics import IngestMetrics
from services.ingest.parsing import ParsedBody, parse_body
from services.ingest.publisher import BrokerUnavailable, Publisher
from services.ingest.schemas import EVENT_BODY_OPENAPI, AcceptedOut, problem_responses

router = APIRouter(tags=["webhooks"])

PLANNED_PROVIDERS = ("hubspot", "pipedrive", "salesforce", "segment")
SIGNATURE_HEADER = "X-Closedloop-Signature"
# Bodies up to this size are verified and validated on the event loop (tens of microseconds
# for one event); a bigger batch would stall every other request, so it goes to a thread.
INLINE_BODY_BYTES = 64 * 1024

_OPENAPI: dict[str, Any] = {
    **EVENT_BODY_OPENAPI,
    "parameters": [
        {
            "name": SIGNATURE_HEADER,
            "in": "header",
            "required": True,
            "description": "sha256=<hex HMAC-SHA256 of the raw body under the shared secret>",
            "schema": {"type": "string"},
        }
    ],
}


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


def provider_secret(provider: str, secrets: dict[str, str]) -> str:
    """Return the shared secret of a supported provider: 404 if unsupported, 401 if unset."""
    if provider in PLANNED_PROVIDERS:
        raise Problem(404, "Not Found", f"provider {provider!r} is not supported yet")
    if provider != "generic":
        raise Problem(404, "Not Found", f"unknown webhook provider {provider!r}")
    secret = secrets.get(provider)
    if not secret:
        raise Problem(
            401,
            "Unauthorized",
            "no shared secret is configured for this webhook (CLOSEDLOOP_WEBHOOK_SECRET_GENERIC)",
        )
    return secret


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """One webhook request, authenticated by provider, with the app's collaborators."""

    provider: str
    secret: str
    body: bytes
    signature: str | None
    settings: Settings
    publisher: Publisher
    metrics: IngestMetrics

    def parsed(self) -> ParsedBody:
        """Return the validated body: 401 unless the signature matches, 400/422 if invalid."""
        if not signature_matches(self.secret, self.body, self.signature):
            raise Problem(
                401,
                "Unauthorized",
                f"missing or bad {SIGNATURE_HEADER}: expected sha256=<hex HMAC of the body>",
            )
        return parse_body(self.body, max_events=self.settings.max_batch_events)


async def webhook_call(provider: str, request: Request) -> WebhookCall:
    """Resolve the provider's secret (404, 401), then read the JSON body (415, 413)."""
    state = request.app.state
    secret = provider_secret(provider, state.webhook_secrets)
    settings: Settings = state.settings
    body = await read_json_body(request, limit=settings.max_body_bytes)
    return WebhookCall(
        provider=provider,
        secret=secret,
        body=body,
        signature=request.headers.get(SIGNATURE_HEADER),
        settings=settings,
        publisher=state.publisher,
        metrics=state.ingest_metrics,
    )


WebhookCallDep = Annotated[WebhookCall, Depends(webhook_call)]


@router.post(
    "/v1/webhooks/{provider}",
    status_code=202,
    response_model=AcceptedOut,
    openapi_extra=_OPENAPI,
    responses=problem_responses(400, 401, 404, 413, 415, 422, 503),
)
async def post_webhook(call: WebhookCallDep) -> Response:
    """Publish the signed events of a webhook call, all or nothing, like ``POST /v1/events``."""
    if len(call.body) <= INLINE_BODY_BYTES:
        parsed = call.parsed()
    else:
        parsed = await run_in_threadpool(call.parsed)
    endpoint = f"webhook_{call.provider}"
    try:
        # Awaits the broker's acknowledgement of every event, gathered with concurrent requests.
        accepted = await call.publisher.publish_async(parsed.events, items=parsed.items)
    except BrokerUnavailable:
        call.metrics.publish_failures.labels(endpoint).inc()
        raise
    call.metrics.accepted.labels(endpoint).inc(accepted)
    # Rendered directly: the same body as AcceptedOut, without re-validating it per request.
    return Response(orjson.dumps({"accepted": accepted}), 202, media_type="application/json")
