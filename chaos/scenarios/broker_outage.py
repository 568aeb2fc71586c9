"""Broker outage during ingest: the broker stops under load and comes back on the same port.

The load keeps posting while the broker is away (quick: 6 s, full: 45 s, longer than the
worker's longest back-off of 30 s), and a prober posts a new small batch every 0.1 s, once,
without retrying (its events must never be stored: nothing of a refused request is
published). Ingest must answer 503 with ``Retry-After`` and never 202 meanwhile; the client
waits what Retry-After says and sends the same batch again. When the broker is back, ingest
reconnects by itself (its breaker's probe) and the worker rejoins by itself, reading the new,
empty partitions from offset 0 although the database remembers larger offsets from before.

The bundled broker keeps everything in memory: events it acknowledged before it stopped but
no worker had consumed yet die with it (Apache Kafka keeps them on disk, replicated: with
``acks=all`` an acknowledged record survives a broker restart). The scenario counts them
(``died_with_memory_broker``) and the harness posts them again after the restart, as Kafka
would still have them; they are then checked like every other acknowledged event.

Pass: no 202 while the broker is down, every answer then a 503 with Retry-After, and none of
the prober's events stored; every event
acknowledged counted exactly once, reports to the cent; the topic has its 6 partitions again.
``recover_s``: from the broker's restart to the first event acknowledged after it being
stored (ingest and worker both back).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from kafka import KafkaConsumer

from chaos.common import settle_and_reconcile, traffic_checks
from chaos.ledger import Ledger, stored_event_ids
from chaos.observe import p95
from chaos.pipeline import Pipeline
from chaos.result import Outcome
from chaos.traffic import Attempt, Client, Traffic, stories

RATE = 300


def run(*, quick: bool, workdir: Path) -> Outcome:
    outcome = Outcome("broker_outage")
    down_s = 6.0 if quick else 45.0
    ledger = Ledger()
    with Pipeline(workdir, workers=1) as pipe:
        outcome.figures["pipeline_start_s"] = pipe.start_s
        with Traffic(pipe.ingest_url, pipe.key, ledger, rate=RATE) as load:
            time.sleep(5.0)
            pipe.stop_broker()
            down_at = time.monotonic()
            with Prober(pipe, ledger, seed=load.seed + 1_000_000) as prober:
                died = _died_with_broker(pipe, ledger, within_s=down_s)
                time.sleep(max(0.0, down_at + down_s - time.monotonic()))
            up_at = time.monotonic()
            pipe.start_broker()
            _post_again(pipe, ledger, died)
            recovered = _first_new_stored(pipe, load, after=up_at, timeout_s=90.0)
            time.sleep(5.0)
        settle_and_reconcile(outcome, pipe, ledger, timeout_s=240 if quick else 900)
        traffic_checks(outcome, load)
        outcome.figures["partitions_after_restart"] = _partitions(pipe)
        stored = stored_event_ids(pipe.database_url)
    outcome.figures["outage_s"] = round(up_at - down_at, 1)
    outcome.figures["died_with_memory_broker"] = len(died)
    outcome.recover_s = None if recovered is None else round(recovered - up_at, 1)
    outcome.check("recovered", recovered is not None, "no event acknowledged after it stored")
    _outage_answers(outcome, load.attempts() + prober.attempts, down_at=down_at, up_at=up_at)
    outcome.figures["probe_requests"] = len(prober.attempts)
    published = prober.sent & stored
    outcome.check("nothing_refused_published", not published, f"{len(published)} probe events")
    outcome.check("six_partitions", outcome.figures["partitions_after_restart"] == 6)
    return outcome


class Prober:
    """While the broker is down: a new small batch every 0.1 s, sent once (no retry)."""

    def __init__(self, pipe: Pipeline, ledger: Ledger, *, seed: int) -> None:
        self._client = Client(pipe.ingest_url, pipe.key)
        self._ledger, self._stories = ledger, stories(seed, deals=5, days=30)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-prober", daemon=True)
        self.sent: set[str] = set()

    @property
    def attempts(self) -> list[Attempt]:
        return self._client.attempts

    def _run(self) -> None:
        for story in self._stories:
            for i in range(0, len(story), 20):
                if self._stop.wait(0.1):
                    return
                batch = story[i : i + 20]
                self._ledger.record_sent(batch)
                self.sent.update(e["event_id"] for e in batch)
                if self._client.post(batch).status == 202:  # must not happen: checked
                    self._ledger.record_acknowledged(batch)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._client.close()


def _died_with_broker(pipe: Pipeline, ledger: Ledger, *, within_s: float) -> list[str]:
    """Acknowledged events not stored once the worker's last transaction ended (stored count
    steady for 2 s, bounded): consumed by nobody, they died with the in-memory broker."""
    deadline, last, since = time.monotonic() + max(within_s, 15.0), -1, time.monotonic()
    while time.monotonic() < deadline:
        count = pipe.stored()
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= 2.0:
            break
        time.sleep(0.2)
    return sorted(ledger.acknowledged_ids() - stored_event_ids(pipe.database_url))


def _post_again(pipe: Pipeline, ledger: Ledger, ids: list[str]) -> None:
    """Post events again as Kafka would still hold them (same ids, same content)."""
    client = Client(pipe.ingest_url, pipe.key, give_up_s=120.0)
    try:
        events = ledger.events(ids)
        for i in range(0, len(events), 500):
            client.deliver(events[i : i + 500], ledger)
    finally:
        client.close()


def _first_new_stored(
    pipe: Pipeline, load: Traffic, *, after: float, timeout_s: float
) -> float | None:
    """The moment an event of the load acknowledged after ``after`` is found stored."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        firsts = [a for a in load.attempts() if a.status == 202 and a.started >= after]
        if firsts:
            stored = stored_event_ids(pipe.database_url)
            if any(a.first_id in stored for a in firsts):
                return time.monotonic()
        time.sleep(0.2)
    return None


def _outage_answers(
    outcome: Outcome, attempts: list[Attempt], *, down_at: float, up_at: float
) -> None:
    """Every request sent while the broker was down: 503 with Retry-After, never 202."""
    during = [a for a in attempts if a.started >= down_at and a.ended <= up_at]
    by_status: dict[str, int] = {}
    for a in during:
        key = str(a.status) if a.status is not None else "no answer"
        by_status[key] = by_status.get(key, 0) + 1
    unavailable = [a for a in during if a.status == 503]
    with_retry_after = sum(1 for a in unavailable if a.retry_after)
    latencies = sorted(a.ended - a.started for a in unavailable)
    worst = p95(latencies)
    outcome.figures["outage_requests_by_status"] = by_status
    outcome.figures["outage_503_with_retry_after"] = with_retry_after
    outcome.figures["outage_503_p95_ms"] = None if worst is None else round(worst * 1000)
    if latencies:
        outcome.figures["outage_503_p50_ms"] = round(latencies[len(latencies) // 2] * 1000)
    outcome.check("no_202_while_down", by_status.get("202", 0) == 0, f"{by_status}")
    outcome.check("503_while_down", len(unavailable) > 0 and len(unavailable) == len(during))
    outcome.check("retry_after_on_503", with_retry_after == len(unavailable))


def _partitions(pipe: Pipeline) -> int:
    consumer = KafkaConsumer(bootstrap_servers=pipe.bootstrap, request_timeout_ms=10_000)
    try:
        return len(consumer.partitions_for_topic(pipe.settings().events_topic) or ())
    finally:
        consumer.close()
