"""Admission control: beyond its capacity, ingest refuses at once instead of queueing.

Invariants:
- At most ``MAX_IN_FLIGHT`` requests to the ingest routes (``/v1/events``,
``/v1/webhooks/*``) are being handled at any moment in a process; a request arriving beyond
that is answered ``503`` with ``Retry-After`` straight away, before its body is read or
anything is parsed or published (Salesforce gets its SOAP fault, like every other failure on
its route). Health, readiness and metrics are never refused.
- A body larger than ``LARGE_BODY_BYTES`` (or of unknown length) is read and parsed only while
  holding the process's one large-body turn (``large_body_turn``); a request that cannot get
  the turn within ``LARGE_WAIT_S`` is answered 503 with ``Retry-After`` before its body is read.

Why: nothing else bounded the requests a process holds. Each accepted connection's request
waited its turn for the request threads, the event loop and the publisher, so under a load
beyond capacity every client's latency grew with the number of clients (300 clients posting
1-10-event batches: every request accepted, p99 6.7 s; more clients, longer) until clients
timed out, with no signal to slow down.
With the bound, a request that is admitted waits behind at most ``MAX_IN_FLIGHT - 1`` others,
and the rest are told when to retry. By Little's law an admitted request's mean latency is
``MAX_IN_FLIGHT`` over the throughput, which the bound hardly changes (measured on a loaded
2-core machine: 80-190 requests/s of small batches, so 0.5-1.2 s at 96; 128 gave the same
throughput and twice the latency of 64). The bound counts requests, not events, so large
batches in flight make it longer. It stays above the concurrency of a well-behaved sender
(the webhook benchmark holds 64 connections).

Why the turn: JSON of tiny values costs tens of times its size once parsed (a 10 MB body of
``{}`` is 3.5 million dicts, ~260 MB, and a second of CPU holding the GIL). Parsed concurrently,
eight such bodies took ingest from 100 MB to 1.1 GB; any number of clients could have made it
run out of memory. Waiting for the turn holds no thread and no body (the body stays in the
socket until the turn is given), so requests with small bodies are never queued behind it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.core.http import problem_body, unavailable
from services.ingest.metrics import IngestMetrics
from services.ingest.providers import PROVIDERS

MAX_IN_FLIGHT = 96
LARGE_BODY_BYTES = 1024 * 1024
LARGE_WAIT_S = 5.0
_WEBHOOKS = "/v1/webhooks/"
_DETAIL = (
    "ingest is at capacity ({limit} requests in progress); nothing of this request was "
    "read or published: retry the same request after Retry-After seconds"
)


def endpoint_of(path: str) -> str:
    """Return the metrics label of an ingest path (``events``, ``webhook_hubspot``, …)."""
    if path.startswith(_WEBHOOKS):
        return "webhook_" + path[len(_WEBHOOKS) :].split("/", 1)[0]
    return "events"


class Admission:
    """Pure ASGI middleware counting in-flight ingest requests and refusing past the bound.

    It runs on the process's one event loop, so the count needs no lock.
    """

    def __init__(self, app: ASGIApp, *, metrics: IngestMetrics, limit: int = MAX_IN_FLIGHT) -> None:
        self.app, self.metrics, self.limit = app, metrics, limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            endpoint = endpoint_of(scope["path"])
            self.metrics.refused.labels(endpoint, "503").inc()
            await self._refuse(scope["path"], send)
            return
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    async def _refuse(self, path: str, send: Send) -> None:
        problem = unavailable(_DETAIL.format(limit=self.limit))
        body, media_type = _render(path, problem_body(problem))
        headers = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _render(path: str, problem: dict[str, object]) -> tuple[bytes, str]:
    """Return the refusal's body and media type: the provider's own shape on its webhook."""
    provider = PROVIDERS.get(path[len(_WEBHOOKS) :]) if path.startswith(_WEBHOOKS) else None
    custom = provider.failed(503, problem) if provider is not None else None
    if custom is not None:
        return custom.body, custom.media_type
    return orjson.dumps(problem), "application/problem+json"


@asynccontextmanager
async def large_body_turn(request: Request, *, limit: int) -> AsyncIterator[None]:
    """Hold the process's large-body turn while a large body is read and parsed (503 if none).

    Bodies declared at most ``LARGE_BODY_BYTES`` need no turn, nor do bodies declared over
    ``limit`` (refused 413 without being read).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and not LARGE_BODY_BYTES < int(declared) <= limit:
        yield
        return
    state = request.app.state
    if getattr(state, "large_body_turn", None) is None:
        state.large_body_turn = anyio.Semaphore(1)  # made on the app's event loop
    turn: anyio.Semaphore = state.large_body_turn
    acquired = False
    with anyio.move_on_after(LARGE_WAIT_S):
        await turn.acquire()
        acquired = True
    if not acquired:
        raise unavailable(
            f"other bodies over {LARGE_BODY_BYTES} bytes are being processed; nothing of this "
            "request was read: retry it after Retry-After seconds, or send smaller batches"
        )
    try:
        yield
    finally:
        turn.release()
