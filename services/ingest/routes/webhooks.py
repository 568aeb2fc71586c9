"""``POST /v1/webhooks/{provider}``: each CRM's own payload and authentication, mapped.

The route only dispatches; ``services/ingest/providers/`` holds one pure module per provider.
Order of work, which is what keeps refused requests harmless:

1. the provider is known (404), the media type is one it posts (415), the body fits the
   provider's own bound (413); a large body waits for the process's large-body turn
   (``admission.large_body_turn``: 503 if it cannot get it soon) before it is read;
2. ``verify`` on the raw bytes: an unset setting or a bad, stale or foreign request is 401,
   before anything is parsed (Salesforce, which signs nothing, parses hardened XML here);
3. the provider's rate limit (429 + ``Retry-After``);
4. ``map`` (400/422 naming the provider's field), then canonical validation of every mapped
   event, all or nothing (422 naming ``events[i].field``);
5. publish, and answer as the provider expects (202, or Salesforce's SOAP acknowledgement)
   only once the broker acknowledged every event. Any failure is answered in the provider's
   own error shape (Salesforce: a SOAP fault), so it retries what it should.

Nothing of a refused request reaches the broker. Webhook senders post one event per request,
so this is a per-request hot path (``bench/webhooks.py``): one dependency-free handler, small
bodies checked and mapped on the event loop, bigger ones in a thread.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from services.core.http import Problem, problem_body
from services.core.ratelimit import RateLimiter
from services.core.settings import Settings
from services.ingest.admission import large_body_turn
from services.ingest.deps import read_body
from services.ingest.errors import broker_problem
from services.ingest.metrics import IngestMetrics
from services.ingest.parsing import ParsedBody, validate_items
from services.ingest.providers import PROVIDERS
from services.ingest.providers.base import (
    Delivery,
    Malformed,
    Mapped,
    NotConfigured,
    Provider,
    Refused,
)
from services.ingest.publisher import BrokerUnavailable, Publisher, RecordTooLarge
from services.ingest.schemas import AcceptedOut, problem_responses, webhook_openapi

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

# Bodies up to this size are verified, mapped and validated on the event loop (tens of
# microseconds for one event); a bigger one would stall every other request: a thread.
INLINE_BODY_BYTES = 64 * 1024


def public_url(request: Request, settings: Settings) -> str:
    """Return the URL the provider called: the configured public base, else the request's."""
    if not settings.ingest_public_url:
        return str(request.url)
    query = request.url.query
    path = request.url.path + (f"?{query}" if query else "")
    return settings.ingest_public_url.rstrip("/") + path


def _refusal(exc: Exception) -> Problem:
    if isinstance(exc, NotConfigured):
        return Problem(
            401,
            "Unauthorized",
            f"this webhook is not configured: {exc} (every request is refused until then)",
        )
    if isinstance(exc, Refused):
        return Problem(401, "Unauthorized", exc.detail)
    assert isinstance(exc, Malformed)
    title = "Malformed body" if exc.status == 400 else "Invalid webhook payload"
    return Problem(exc.status, title, exc.detail, errors=exc.errors or None)


def _reply(provider: Provider, problem: Problem) -> Response:
    body = problem_body(problem)
    custom = provider.failed(problem.status, body)
    headers = problem.headers or {}
    if custom is not None:
        return Response(custom.body, custom.status, headers, media_type=custom.media_type)
    return Response(orjson.dumps(body), problem.status, headers, "application/problem+json")


@router.post(
    "/v1/webhooks/{provider}",
    status_code=202,
    response_model=AcceptedOut,
    openapi_extra=webhook_openapi(),
    responses=problem_responses(400, 401, 404, 413, 415, 422, 429, 503),
)
async def post_webhook(provider: str, request: Request) -> Response:
    """Authenticate, map and publish one provider delivery, all or nothing."""
    handler = PROVIDERS.get(provider)
    if handler is None:
        known = ", ".join(sorted(PROVIDERS))
        raise Problem(404, "Not Found", f"unknown webhook provider {provider!r} (known: {known})")
    state = request.app.state
    settings: Settings = state.settings
    metrics: IngestMetrics = state.ingest_metrics
    endpoint = f"webhook_{provider}"
    limit = min(settings.max_body_bytes, handler.max_body_bytes or settings.max_body_bytes)
    try:
        async with large_body_turn(request, limit=limit):
            mapped, parsed = await _read_and_check(request, handler, settings, limit)
        published = 0
        if parsed.events:
            publisher: Publisher = state.publisher
            # Awaited, not a thread: the publisher gathers concurrent requests' events into
            # shared batch records and resolves this once all of ours are acknowledged.
            published = await publisher.publish_async(parsed.events, items=parsed.items)
    except BrokerUnavailable as exc:  # Overloaded too: both are a 503 the sender retries
        metrics.publish_failures.labels(endpoint).inc()
        return _reply(handler, broker_problem(exc))
    except RecordTooLarge as exc:
        metrics.refused.labels(endpoint, "413").inc()
        return _reply(handler, Problem(413, "Payload Too Large", str(exc)))
    except Problem as problem:
        metrics.refused.labels(endpoint, str(problem.status)).inc()
        return _reply(handler, problem)
    metrics.accepted.labels(endpoint).inc(published)
    if mapped.ignored:
        metrics.ignored.labels(endpoint).inc(mapped.ignored)
    reply = handler.accepted(mapped, published)
    if reply is not None:
        return Response(reply.body, reply.status, media_type=reply.media_type)
    out: dict[str, Any] = {"accepted": published, "ignored": mapped.ignored}
    return Response(orjson.dumps(out), 202, media_type="application/json")


async def _read_and_check(
    request: Request, provider: Provider, settings: Settings, limit: int
) -> tuple[Mapped, ParsedBody]:
    """Read the body (at most ``limit`` bytes), then verify, map and validate it."""
    body = await read_body(request, limit=limit, media_types=provider.media_types)
    delivery = Delivery(
        body=body,
        headers=dict(request.headers.items()),
        url=public_url(request, settings),
        method=request.method,
        received_at=datetime.now(UTC),
    )
    limiter: RateLimiter = request.app.state.rate_limiter
    if len(body) <= INLINE_BODY_BYTES:
        return _checked(provider, delivery, settings, limiter)
    outcome = await run_in_threadpool(_checked_detached, provider, delivery, settings, limiter)
    if isinstance(outcome, Problem):
        raise outcome
    return outcome


def _checked_detached(
    provider: Provider, delivery: Delivery, settings: Settings, limiter: RateLimiter
) -> tuple[Mapped, ParsedBody] | Problem:
    """``_checked`` in a worker thread: a refusal is returned, stripped of its traceback.

    An exception raised in the thread would reach the route through the worker's future, in a
    reference cycle with its traceback, whose frames hold the parsed body (hundreds of MB for
    10 MB of tiny JSON values) until a full garbage collection, which may not come for a long
    time: ingest grew by ~150 MB per refused large body.
    """
    try:
        return _checked(provider, delivery, settings, limiter)
    except Problem as problem:
        problem.__traceback__ = problem.__context__ = problem.__cause__ = None
        return problem


def _checked(
    provider: Provider, delivery: Delivery, settings: Settings, limiter: RateLimiter
) -> tuple[Mapped, ParsedBody]:
    """Verify, then spend a token of the provider's bucket, then map and validate."""
    try:
        provider.verify(delivery, settings)
    except (NotConfigured, Refused, Malformed) as exc:  # Malformed: Salesforce parses to verify
        raise _refusal(exc) from None
    limiter.check(f"webhook:{provider.name}")
    try:
        mapped = provider.map(delivery, settings)
    except Malformed as exc:
        raise _refusal(exc) from None
    if not mapped.events:
        return mapped, ParsedBody([], [])
    return mapped, validate_items(mapped.events, prefix=mapped.context.get("prefix", "events"))
