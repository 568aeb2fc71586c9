"""``POST /v1/events``: canonical events from API clients, accepted only once acknowledged."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.core.ratelimit import RateLimiter
from services.ingest.deps import IngestPrincipal, JsonBody, MetricsDep, PublisherDep, SettingsDep
from services.ingest.parsing import parse_body
from services.ingest.publisher import BrokerUnavailable
from services.ingest.schemas import EVENT_BODY_OPENAPI, AcceptedOut, problem_responses

router = APIRouter(tags=["events"])


@router.post(
    "/v1/events",
    status_code=202,
    response_model=AcceptedOut,
    openapi_extra=EVENT_BODY_OPENAPI,
    responses=problem_responses(400, 401, 403, 413, 415, 422, 429, 503),
)
def post_events(
    principal: IngestPrincipal,
    request: Request,
    body: JsonBody,
    settings: SettingsDep,
    publisher: PublisherDep,
    metrics: MetricsDep,
) -> AcceptedOut:
    """Publish one event or a batch, all or nothing; 202 once the broker has every event."""
    # A sync route: FastAPI runs it in its threadpool, so blocking on acks never stalls the loop.
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.check(f"key:{principal.key_id}")
    parsed = parse_body(body, max_events=settings.max_batch_events)
    try:
        accepted = publisher.publish(parsed.events, items=parsed.items)
    except BrokerUnavailable:
        metrics.publish_failures.labels("events").inc()
        raise
    metrics.accepted.labels("events").inc(accepted)
    return AcceptedOut(accepted=accepted)
