"""The overload scenario's load: many impatient clients posting valid batches, and its ledger.

``clients`` coroutines, each on its own keep-alive connection (``chaos.raw_http``), post valid
canonical events until the deadline: three of four to ``POST /v1/events`` with an ingest key,
one of four to the ``generic`` webhook, signed (Standard Webhooks). Batch sizes cycle through
``sizes``; every event id is new. Clients are impatient on purpose: after a refusal they wait
0.2–1 s, not the ``Retry-After`` they were given, so the pressure stays on. Every request
is recorded (status, latency, whether ``Retry-After`` came with it, or how it failed) and the
ledger keeps every id sent, acknowledged (202), refused (429/503: nothing of the request may
be stored) or of unknown outcome (timeout or reset: the server may have published it, as a
client that gave up cannot know; a real one would retry the same ids).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from chaos.edge_stack import GENERIC_SECRET
from chaos.raw_http import Connection, Failure
from tests.support.signers.generic import standard_headers

CLIENT_TIMEOUT_S = 10.0
RETRY_S = (0.2, 1.0)  # an impatient client's wait after a refusal or a failure


@dataclass
class LoadLedger:
    """What the load sent and got back."""

    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)  # "202", "503", "timeout", …
    accepted_s: list[float] = field(default_factory=list)  # latency of each 202
    refused_s: list[float] = field(default_factory=list)  # latency of each 429/503
    refused_without_retry_after: int = 0
    unexpected: list[str] = field(default_factory=list)  # any other answer, with its body

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def batch(client: int, number: int, size: int) -> list[dict[str, Any]]:
    """Return ``size`` valid events whose ids are unique to (client, number)."""
    tag = f"ov-{client}-{number}"
    events: list[dict[str, Any]] = []
    for i in range(size):
        if i % 4 == 3:
            events.append(
                {
                    "event_id": f"{tag}-{i}",
                    "type": "deal.created",
                    "occurred_at": "2026-04-02T10:00:00Z",
                    "deal_id": f"{tag}-deal-{i}",
                    "account_id": f"ov-account-{client}",
                    "amount": f"{500 + i}.25",
                    "currency": "USD",
                }
            )
        else:
            events.append(
                {
                    "event_id": f"{tag}-{i}",
                    "type": "touch",
                    "occurred_at": "2026-04-01T10:00:00Z",
                    "campaign_id": f"ov-campaign-{i % 8}",
                    "contact_id": f"ov-contact-{client}-{i % 16}",
                }
            )
    return events


def _request(
    client: int, events: list[dict[str, Any]], key: str
) -> tuple[str, dict[str, str], bytes]:
    """Return the path, headers and body for posting ``events`` as client ``client``."""
    body = orjson.dumps({"events": events})
    if client % 4 == 3:
        signed = standard_headers(body, secret=GENERIC_SECRET, now=datetime.now(UTC))
        return "/v1/webhooks/generic", {"Content-Type": "application/json", **signed}, body
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return "/v1/events", auth, body


async def _client(
    n: int, url: str, key: str, sizes: tuple[int, ...], deadline: float, ledger: LoadLedger
) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    connection = Connection(parts.hostname, parts.port, timeout_s=CLIENT_TIMEOUT_S)
    rng = random.Random(n)
    number = 0
    try:
        while time.monotonic() < deadline:
            number += 1
            events = batch(n, number, sizes[number % len(sizes)])
            path, headers, body = _request(n, events, key)
            ids = [e["event_id"] for e in events]
            ledger.sent.update(ids)
            started = time.perf_counter()
            try:
                reply = await connection.post(path, headers, body)
            except Failure as failure:
                ledger.statuses[failure.kind] += 1
                ledger.unknown.update(ids)
                await asyncio.sleep(rng.uniform(*RETRY_S))
                continue
            elapsed = time.perf_counter() - started
            ledger.statuses[str(reply.status)] += 1
            if reply.status == 202:
                ledger.accepted_s.append(elapsed)
                ledger.acknowledged.update(ids)
                continue
            if reply.status in (429, 503):
                ledger.refused.update(ids)
                ledger.refused_s.append(elapsed)
                ledger.refused_without_retry_after += "retry-after" not in reply.headers
            else:
                ledger.unexpected.append(f"{reply.status}: {reply.body[:200]!r}")
            await asyncio.sleep(rng.uniform(*RETRY_S))
    finally:
        await connection.close()


def run_load(
    url: str, key: str, *, clients: int, seconds: float, sizes: tuple[int, ...]
) -> LoadLedger:
    """Run ``clients`` impatient clients for ``seconds``; return the ledger."""
    ledger = LoadLedger()
    deadline = time.monotonic() + seconds

    async def main() -> None:
        await asyncio.gather(
            *(_client(n, url, key, sizes, deadline, ledger) for n in range(clients))
        )

    asyncio.run(main())
    return ledger


def percentile_ms(values: list[float], q: float) -> float | None:
    """Return the ``q`` quantile (nearest rank) of ``values`` in milliseconds, or None."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))
    return round(ordered[rank] * 1000, 1)
