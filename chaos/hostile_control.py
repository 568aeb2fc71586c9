"""What runs beside the hostile requests: valid traffic, a health watch, and an XXE canary.

- ``ControlStream``: a thread posting valid canonical events, alternating a 10-event batch on
  ``POST /v1/events`` and a one-event signed ``generic`` webhook delivery, every ``PERIOD_S``.
  Its ledger holds every id sent and every id acknowledged (202); a refusal is kept too.
- ``fixture_deliveries``: the recorded deliveries of every other provider with the events they
  must map to (the hand-made ``*.expected.json``), sent between hostile requests as valid
  traffic of the same endpoints.
- ``HealthWatch``: ``GET /healthz`` every ``PERIOD_S`` (slowest answer, failures, the longest
  run of consecutive failures) and the ingest process's resident memory (``VmRSS``) at each
  probe. The process is judged alive as a liveness probe judges it: it fails only after
  ``LIVENESS_FAILURES`` failed probes in a row (Kubernetes' default failure threshold is 3).
- ``Canary``: a loopback TCP listener the XML external-entity cases point at; any connection to
  it means a parser fetched something.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.common import memory_kib
from chaos.hostile_client import credentials
from chaos.hostile_corpus import FIXTURES

PERIOD_S = 0.05
# A probe slower than this counts as failed (a 10 MB body of tiny values holds the GIL ~1 s,
# several when the machine is starved of CPU).
PROBE_TIMEOUT_S = 5.0
LIVENESS_FAILURES = 2


@dataclass
class Delivery:
    """A valid provider delivery and the canonical event ids it must store."""

    provider: str
    name: str
    body: bytes
    content_type: str
    event_ids: list[str]


def fixture_deliveries() -> list[Delivery]:
    """Every recorded hubspot, pipedrive, segment and Salesforce delivery with its expectation."""
    out = []
    for provider in ("hubspot", "pipedrive", "segment", "salesforce"):
        for expected in sorted((FIXTURES / provider).glob("*.expected.json")):
            stem = expected.name.removesuffix(".expected.json")
            xml = provider == "salesforce"
            body = (FIXTURES / provider / (stem + (".xml" if xml else ".json"))).read_bytes()
            ids = [event["event_id"] for event in json.loads(expected.read_text())]
            media = "text/xml; charset=utf-8" if xml else "application/json"
            out.append(Delivery(provider, stem, body, media, ids))
    return out


def control_events(tag: str, count: int) -> list[dict[str, Any]]:
    """Return ``count`` valid canonical events with ids unique to ``tag``."""
    events: list[dict[str, Any]] = []
    for i in range(count):
        event_id = f"control-{tag}-{i}"
        if i % 3 == 2:
            events.append(
                {
                    "event_id": event_id,
                    "type": "deal.created",
                    "occurred_at": "2026-03-02T10:00:00Z",
                    "deal_id": f"control-deal-{tag}-{i}",
                    "account_id": f"control-account-{tag}",
                    "amount": f"{1000 + i}.50",
                    "currency": "USD",
                }
            )
        else:
            events.append(
                {
                    "event_id": event_id,
                    "type": "touch",
                    "occurred_at": "2026-03-01T10:00:00Z",
                    "campaign_id": f"control-campaign-{i % 4}",
                    "account_id": f"control-account-{tag}",
                }
            )
    return events


@dataclass
class Ledger:
    """Control traffic: ids sent and acknowledged, requests made, refusals seen."""

    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    requests: int = 0
    refusals: list[str] = field(default_factory=list)

    def record(self, ids: list[str], status: int, detail: str) -> None:
        self.requests += 1
        self.sent.update(ids)
        if 200 <= status < 300:
            self.acknowledged.update(ids)
        else:
            self.refusals.append(f"{status}: {detail[:200]}")


class _Periodic:
    """A daemon thread calling ``tick`` every ``PERIOD_S`` until stopped."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(PERIOD_S)

    def __enter__(self) -> _Periodic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


class ControlStream(_Periodic):
    """Valid canonical events through ``/v1/events`` and the generic webhook, alternately."""

    def __init__(self, ingest_url: str, key: str, ledger: Ledger) -> None:
        super().__init__()
        self.url, self.key, self.ledger = ingest_url, key, ledger
        self._client = httpx.Client(timeout=30)
        self._n = 0

    def tick(self) -> None:
        self._n += 1
        tag = f"{self._n}-{uuid.uuid4().hex[:6]}"
        webhook = self._n % 2 == 0
        events = control_events(tag, 1 if webhook else 10)
        body = orjson.dumps(events[0] if webhook else {"events": events})
        endpoint = "generic" if webhook else "events"
        url = self.url + ("/v1/webhooks/generic" if webhook else "/v1/events")
        headers = {"Content-Type": "application/json", **credentials(endpoint, body, url, self.key)}
        try:
            response = self._client.post(url, content=body, headers=headers)
            status, detail = response.status_code, response.text
        except httpx.HTTPError as exc:
            status, detail = 0, repr(exc)
        self.ledger.record([e["event_id"] for e in events], status, detail)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._client.close()


class HealthWatch(_Periodic):
    """``/healthz`` latency and failures, and the ingest process's RSS, every ``PERIOD_S``."""

    def __init__(self, ingest_url: str, pid: int) -> None:
        super().__init__()
        self.url, self.pid = ingest_url + "/healthz", pid
        self._client = httpx.Client(timeout=PROBE_TIMEOUT_S)
        self.probes = 0
        self.failures: list[str] = []
        self.slowest_s = 0.0
        self.in_a_row = 0
        self.most_in_a_row = 0
        self.rss_kib: list[int] = []

    def tick(self) -> None:
        started = time.perf_counter()
        failure = None
        try:
            response = self._client.get(self.url)
            if response.status_code != 200:
                failure = f"status {response.status_code}"
        except httpx.HTTPError as exc:
            failure = repr(exc)
        if failure is not None:
            self.failures.append(failure)
        self.in_a_row = 0 if failure is None else self.in_a_row + 1
        self.most_in_a_row = max(self.most_in_a_row, self.in_a_row)
        self.probes += 1
        self.slowest_s = max(self.slowest_s, time.perf_counter() - started)
        rss = memory_kib(self.pid).get("VmRSS")
        if rss is not None:
            self.rss_kib.append(rss)

    @property
    def alive(self) -> bool:
        """Whether no run of ``LIVENESS_FAILURES`` failed probes in a row happened."""
        return self.most_in_a_row < LIVENESS_FAILURES

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._client.close()


class Canary:
    """A loopback TCP listener counting connections (a parser fetching an external entity)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canary", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def interleave(hostile: list[Any], valid: list[Any]) -> Iterator[Any]:
    """Yield the hostile items with the valid ones spread evenly between them."""
    every = max(1, len(hostile) // max(1, len(valid)))
    pending = list(valid)
    for index, item in enumerate(hostile):
        if pending and index % every == 0:
            yield pending.pop(0)
        yield item
    yield from pending
