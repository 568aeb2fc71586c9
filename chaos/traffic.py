"""A steady load of CRM stories posted to ingest by a client that retries as CRM providers do.

Stories: each chunk is a simulated CRM history of its own (``services.simulate.generate``:
campaigns, costs, daily FX, accounts and contacts, touches, deals created, won with amounts,
lost, reopened), with its own seed, so every id is unique to the run (the ids hold the seed
and a digest of the arguments; the first seed is drawn at random per run). The generator only
makes input: the figures they must give come from the ledger's independent reference.

Sending: a pacer thread hands batches of ``batch`` events, in each history's ``occurred_at``
order, to ``senders`` threads at ``rate`` events/s overall. When the senders are busy
retrying, the pacer waits (the load falls behind rather than piling up; ``behind_s`` says by
how much). Every batch is recorded in the ledger as sent before its first request, and as
acknowledged on its 202.

Retrying (``deliver``): on 429 or 503 the client waits what ``Retry-After`` says (capped), on
a connection error, a timeout or any other 5xx it backs off (0.1 s doubling to 2 s), and
sends the SAME batch (same event ids) again until it gets 202 or ``give_up_s`` has passed
since its first attempt. Any other 4xx is a refusal, never retried (the generator sends only
valid events, so a scenario counts refusals as failures).
"""

from __future__ import annotations

import itertools
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from chaos.ledger import Ledger
from services.simulate import generate

START = datetime(2026, 1, 1, tzinfo=UTC)
RETRY_AFTER_CAP_S = 5.0
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.1, 2.0


@dataclass(frozen=True)
class Attempt:
    """One request: when it started and ended (monotonic), and its status or error."""

    started: float
    ended: float
    events: int
    first_id: str  # the batch's first event id
    status: int | None  # None: no HTTP answer (connection refused or cut, timeout)
    error: str | None = None
    retry_after: str | None = None


def stories(seed: int, *, deals: int = 40, days: int = 60) -> Iterator[list[dict[str, Any]]]:
    """Endless simulated histories, one per seed from ``seed`` on, each in occurred_at order."""
    for n in itertools.count(seed):
        yield generate(seed=n, deals=deals, start=START, days=days)


class Client:
    """Posts batches to ``POST /v1/events`` with a bearer key; retries like a CRM provider."""

    def __init__(
        self, url: str, key: str, *, timeout_s: float = 10.0, give_up_s: float = 120.0
    ) -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)
        self.give_up_s = give_up_s
        self.attempts: list[Attempt] = []  # appended by this client's thread only
        self.in_flight = False  # a request is waiting for its answer

    def close(self) -> None:
        self._http.close()

    def post(self, events: list[dict[str, Any]]) -> Attempt:
        """One request, never raising: its status, or why there was none."""
        started, body = time.monotonic(), orjson.dumps({"events": events})
        self.in_flight = True
        try:
            response = self._http.post("/v1/events", content=body)
        except httpx.HTTPError as exc:
            attempt = Attempt(
                started, time.monotonic(), len(events), events[0]["event_id"], None, repr(exc)[:200]
            )
        else:
            error = None if response.status_code == 202 else response.text[:200]
            attempt = Attempt(
                started,
                time.monotonic(),
                len(events),
                events[0]["event_id"],
                response.status_code,
                error,
                response.headers.get("Retry-After"),
            )
        finally:
            self.in_flight = False
        self.attempts.append(attempt)
        return attempt

    def deliver(self, events: list[dict[str, Any]], ledger: Ledger) -> bool:
        """Send ``events`` until 202 (True), a refusal or ``give_up_s`` (False)."""
        ledger.record_sent(events)
        first, backoff = time.monotonic(), BACKOFF_FIRST_S
        while True:
            attempt = self.post(events)
            if attempt.status == 202:
                ledger.record_acknowledged(events)
                return True
            if attempt.status is not None and attempt.status < 500 and attempt.status != 429:
                return False  # a refusal: sending it again would not change the answer
            if attempt.status in (429, 503) and attempt.retry_after:
                wait = min(RETRY_AFTER_CAP_S, _seconds(attempt.retry_after, backoff))
            else:
                wait, backoff = backoff, min(BACKOFF_MAX_S, backoff * 2)
            wait *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrecy
            if time.monotonic() + wait - first > self.give_up_s:
                return False
            time.sleep(wait)


def _seconds(retry_after: str, default: float) -> float:
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return default


class Traffic:
    """Simulated stories sent at ``rate`` events/s by ``senders`` retrying clients."""

    def __init__(
        self,
        ingest_url: str,
        key: str,
        ledger: Ledger,
        *,
        rate: float,
        batch: int = 50,
        senders: int = 2,
        seed: int | None = None,
        give_up_s: float = 120.0,
    ) -> None:
        self.ledger, self.rate, self.batch = ledger, rate, batch
        self.seed = seed if seed is not None else random.randrange(1, 2**31)  # noqa: S311
        self.clients = [Client(ingest_url, key, give_up_s=give_up_s) for _ in range(senders)]
        self.refused = 0  # batches refused (4xx but 429) or given up
        self.started_at = self.stopped_at = 0.0
        self.scheduled = 0  # events handed to the senders
        self._due: queue.Queue[list[dict[str, Any]]] = queue.Queue(maxsize=senders)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._pace, name="chaos-pacer", daemon=True)]
        self._threads += [
            threading.Thread(target=self._send, args=(c,), name=f"chaos-sender-{i}", daemon=True)
            for i, c in enumerate(self.clients)
        ]

    def _batches(self) -> Iterator[list[dict[str, Any]]]:
        for history in stories(self.seed):
            for i in range(0, len(history), self.batch):
                yield history[i : i + self.batch]

    def _pace(self) -> None:
        for batch in self._batches():
            due = self.started_at + self.scheduled / self.rate
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            while not self._stop.is_set():
                try:
                    self._due.put(batch, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set():
                return
            self.scheduled += len(batch)

    def _send(self, client: Client) -> None:
        while not self._stop.is_set():
            try:
                batch = self._due.get(timeout=0.2)
            except queue.Empty:
                continue
            if not client.deliver(batch, self.ledger):
                with self._lock:
                    self.refused += 1

    def start(self) -> Traffic:
        self.started_at = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, *, timeout_s: float = 150.0) -> None:
        """Stop sending new batches; wait (bounded) for the ones in flight to finish."""
        self._stop.set()
        self.stopped_at = time.monotonic()
        for thread in self._threads:
            thread.join(timeout_s)
        for client in self.clients:
            client.close()

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def attempts(self) -> list[Attempt]:
        """Every request of every sender, in the order they started."""
        return sorted((a for c in self.clients for a in c.attempts), key=lambda a: a.started)

    def in_flight(self) -> bool:
        """Whether a request is waiting for its answer right now."""
        return any(c.in_flight for c in self.clients)

    def behind_s(self) -> float:
        """How far the load lags its schedule (seconds)."""
        due = (time.monotonic() - self.started_at) * self.rate
        return max(0.0, (due - self.scheduled) / self.rate)

    def figures(self) -> dict[str, Any]:
        """Requests by status, retries, refusals and the rate achieved."""
        attempts = self.attempts()
        statuses: dict[str, int] = {}
        for a in attempts:
            key = str(a.status) if a.status is not None else "no answer"
            statuses[key] = statuses.get(key, 0) + 1
        elapsed = max(1e-9, (self.stopped_at or time.monotonic()) - self.started_at)
        return {
            "target_rate_ev_s": self.rate,
            "acknowledged_rate_ev_s": round(self.ledger.acknowledged_count / elapsed, 1),
            "requests": len(attempts),
            "requests_by_status": statuses,
            "batches_refused_or_given_up": self.refused,
        }
