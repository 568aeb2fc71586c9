"""Admission control: beyond its capacity, ingest refuses at once instead of queueing.

Invariants:
- At most ``limit`` requests to the ingest routes (``/v1/events``, ``/v1/webhooks/*``) are
  being handled at any moment in a process; a request arriving beyond that is answered
  ``503`` with ``Retry-After`` straight away, before its body is read or anything is parsed or
  published (Salesforce gets its SOAP fault, like every other failure on its route). Health,
  readiness and metrics are never refused.
- ``limit`` stays within [``MIN_IN_FLIGHT``, ``MAX_IN_FLIGHT``] and follows the service
  time (from the last byte of a request's body to its answer) the way TCP follows loss
  (``AimdLimit``): one answer slower than ``TARGET_S`` cuts it by a quarter (at most once per
  ``TARGET_S``: one slow wave is one signal), every faster answer raises it by 1/limit.
- A body larger than ``LARGE_BODY_BYTES`` (or of unknown length) is read and parsed only while
  holding the process's one large-body turn (``large_body_turn``); a request that cannot get
  the turn within ``LARGE_WAIT_S`` is answered 503 with ``Retry-After`` before its body is read.

Why: nothing else bounded the requests a process holds. Each accepted connection's request
waited its turn for the request threads, the event loop and the publisher, so under a load
beyond capacity every client's latency grew with the number of clients (500 clients posting
1-10-event batches: none refused, p99 6.4 s, 375 client timeouts at 10 s), with no signal to
slow down. By Little's law an admitted request's mean latency is the limit over the
throughput, and the throughput is the CPU the process gets: a fixed limit (96) kept p99
under 5 s on a loaded 2-core machine but not when other work starved it (30 requests/s:
p99 9.3 s and timeouts again). Steered by the service time, the limit shrinks with the
throughput, so admitted requests stay near ``TARGET_S`` however slow the machine; it is
measured from the end of the body so that a slowly uploading client never shrinks it. The
maximum stays above the concurrency of a well-behaved sender (the webhook benchmark holds 64
connections, answered in milliseconds).

Why the turn: JSON of tiny values costs tens of times its size once parsed (a 10 MB body of
``{}`` is 3.5 million dicts, ~260 MB, and a second of CPU holding the GIL). Parsed concurrently,
eight such bodies took ingest from 100 MB to 1.1 GB; any number of clients could have made it
run out of memory. Waiting for the turn holds no thread and no body (the body stays in the
socket until the turn is given), so requests with small bodies are never queued behind it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.http import problem_body, unavailable
from services.ingest.metrics import IngestMetrics
from services.ingest.providers import PROVIDERS

MAX_IN_FLIGHT = 128
MIN_IN_FLIGHT = 8
TARGET_S = 1.0
BACKOFF = 0.75
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


class AimdLimit:
    """A concurrency limit steered by service times: additive increase, multiplicative cut.

    Pure: the clock is passed in. ``value`` stays within [minimum, maximum].
    """

    def __init__(
        self,
        maximum: int,
        *,
        minimum: int = MIN_IN_FLIGHT,
        target_s: float = TARGET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum, self.minimum = maximum, min(minimum, maximum)
        self.target_s, self._clock = target_s, clock
        self.value = float(maximum)
        self._cut_at = float("-inf")

    def admits(self, in_flight: int) -> bool:
        """Whether one more request may start with ``in_flight`` already being handled."""
        return in_flight < int(self.value)

    def observe(self, service_s: float) -> None:
        """Adjust the limit to one answered request's service time."""
        if service_s <= self.target_s:
            self.value = min(self.maximum, self.value + 1 / self.value)
            return
        now = self._clock()
        if now - self._cut_at >= self.target_s:
            self.value = max(self.minimum, self.value * BACKOFF)
            self._cut_at = now


class Admission:
    """Pure ASGI middleware counting in-flight ingest requests and refusing past the limit.

    It runs on the process's one event loop, so the count needs no lock.
    """

    def __init__(self, app: ASGIApp, *, metrics: IngestMetrics, limit: int = MAX_IN_FLIGHT) -> None:
        self.app, self.metrics = app, metrics
        self.limit = AimdLimit(limit)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if not self.limit.admits(self.in_flight):
            endpoint = endpoint_of(scope["path"])
            self.metrics.refused.labels(endpoint, "503").inc()
            await self._refuse(scope["path"], send)
            return
        self.in_flight += 1
        self.metrics.in_flight.inc()
        body_done = time.monotonic()  # moved to the last body byte, if the app reads one

        async def receive_noting_the_end() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = time.monotonic()
            return message

        async def send_noting_the_answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.limit.observe(time.monotonic() - body_done)
                self.metrics.admission_limit.set(int(self.limit.value))
            await send(message)

        try:
            await self.app(scope, receive_noting_the_end, send_noting_the_answer)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    async def _refuse(self, path: str, send: Send) -> None:
        problem = unavailable(_DETAIL.format(limit=int(self.limit.value)))
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
