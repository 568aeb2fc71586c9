"""One lazily (re)connecting kafka-python producer behind a circuit breaker.

The producer is created lazily (on first use, or by ``warm_up``) and re-created after any send
error: the broker may be down when the service starts, and a restarted broker (the bundled one
forgets everything) no longer knows the idempotent producer's id, which leaves the old producer
failing for good.

A circuit breaker keeps an outage cheap. Once the broker is known to be down (a publish failed
or timed out, a connection attempt failed, or a metadata probe went unanswered), ``_connected``
raises ``BrokerUnavailable`` at once, without touching the network, and a background thread
tries to connect every ``PROBE_INTERVAL_S``; the first success closes the breaker. So during
an outage clients get their 503 in microseconds instead of each holding a worker thread for
the publish timeout, and nothing else (health probes included) queues behind them. Only the
publishes already waiting when the broker went away, and a first connection, wait.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka import KafkaProducer

from services.core.gathering import BrokerUnavailable
from services.core.kafka import broker_answers, broker_listening, ensure_topics, make_producer
from services.core.settings import Settings

log = logging.getLogger(__name__)

# While the broker is down, a background thread tries to connect this often.
PROBE_INTERVAL_S = 0.5
# A connection attempt (bootstrap, then topic set-up) gives up after this long: a live broker
# answers in milliseconds, and a refused connection should not hold anything for long.
CONNECT_TIMEOUT_S = 2.0
# ``check_soon`` asks the broker for metadata at most this often (readiness probes call it,
# and so does a publish still unacknowledged after a while).
CHECK_INTERVAL_S = 2.0


def _close(producer: KafkaProducer, timeout_s: float) -> None:
    """Close ``producer``, giving pending records up to ``timeout_s`` to be acknowledged."""
    try:
        producer.close(timeout=timeout_s)
    except Exception:
        # kafka-python 3.0.12's close() raises from its flush() while records are pending,
        # before it reaches its own force-close: the sender thread would live on, retrying.
        # Force it (pending futures fail at once), then close for real.
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        try:
            producer.close(timeout=1.0)
        except Exception as exc:
            log.warning("could not close a Kafka producer cleanly: %r", exc)


class BrokerLink:
    """A thread-safe holder of one producer: lazy (re)connection, breaker, probe and checks."""

    def __init__(self, settings: Settings, overrides: dict[str, Any]) -> None:
        self._settings = settings
        self._overrides = overrides
        self._timeout_s = settings.publish_timeout_s
        self._connect_timeout_s = min(self._timeout_s, CONNECT_TIMEOUT_S)
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._down: str | None = None  # why the broker is known to be down (breaker open)
        self._probing = False
        self._checking = False
        self._checked_at = float("-inf")
        self._closing = threading.Event()

    def warm_up(self) -> None:
        """Connect now if the broker answers (best effort; publishing retries on demand)."""
        try:
            self._connected()
        except BrokerUnavailable as exc:
            log.warning("broker not reachable at start-up; will retry in the background: %s", exc)

    def broker_problem(self) -> str | None:
        """Return why the broker cannot take events now, or None if it can (never blocks)."""
        if self._closing.is_set():
            return "the service is shutting down"
        if self._down is not None:
            return f"the broker at {self._settings.kafka_bootstrap_servers} is unavailable"
        if self._producer is None:
            return f"not connected to the broker at {self._settings.kafka_bootstrap_servers} yet"
        return None

    def check_soon(self) -> None:
        """Ask the broker for metadata in the background (at most every ``CHECK_INTERVAL_S``).

        A broker that went away while nothing was published is noticed this way (the breaker
        opens) rather than by the next client's publish timing out.
        """
        with self._lock:
            now = time.monotonic()
            if (
                self._producer is None
                or self._checking
                or now - self._checked_at < CHECK_INTERVAL_S
            ):
                return
            self._checking, self._checked_at = True, now
            producer = self._producer
        threading.Thread(
            target=self._check, args=(producer,), name="broker-check", daemon=True
        ).start()

    def _connected(self) -> KafkaProducer:
        """Return the producer: fail fast while the breaker is open, else connect if needed."""
        producer, down = self._producer, self._down
        if down is not None:
            raise BrokerUnavailable(f"the broker is unavailable ({down}); retry later")
        if producer is not None:
            return producer
        with self._lock:  # the first connection: later callers wait for its outcome
            if self._producer is not None:
                return self._producer
            if self._down is not None:
                raise BrokerUnavailable(f"the broker is unavailable ({self._down}); retry later")
            if self._closing.is_set():
                raise BrokerUnavailable("the service is shutting down")
            try:
                self._producer = self._connect()
            except BrokerUnavailable as exc:
                self._open_breaker(str(exc))
                raise
            return self._producer

    def _connect(self) -> KafkaProducer:
        """Create the producer, then the topics (so the broker cannot auto-create them wrong)."""
        timeout_s = self._connect_timeout_s
        try:
            # The bootstrap bound matters: kafka-python waits 30 s by default when nobody answers.
            producer = make_producer(
                self._settings, bootstrap_timeout_ms=int(timeout_s * 1000), **self._overrides
            )
        except Exception as exc:
            raise BrokerUnavailable(f"cannot connect to the broker: {exc!r}") from exc
        try:
            ensure_topics(self._settings, timeout_s=timeout_s)
        except Exception as exc:
            _close(producer, 0)
            raise BrokerUnavailable(f"cannot create the topics: {exc!r}") from exc
        return producer

    def _broker_failed(self, reason: str, producer: KafkaProducer) -> None:
        """Open the breaker after ``producer`` failed, and discard it (unless already replaced)."""
        with self._lock:
            if self._producer is not producer:
                return  # a stale producer's failure: already handled, and a new one took over
            self._producer = None
            self._open_breaker(reason)
        # Zero timeout: fail what is still pending at once (other requests waiting on this
        # producer get their 503 now) rather than retry on a stale producer.
        _close(producer, 0)

    def _open_breaker(self, reason: str) -> None:
        """Mark the broker down and start the probe; the caller holds the lock."""
        if self._down is None:
            log.warning("broker marked down, answering 503 until it is back: %s", reason)
        self._down = reason
        if not self._probing and not self._closing.is_set():
            self._probing = True
            threading.Thread(target=self._probe, name="broker-probe", daemon=True).start()

    def _probe(self) -> None:
        """Try to connect every ``PROBE_INTERVAL_S`` until it works; then close the breaker."""
        while not self._closing.wait(PROBE_INTERVAL_S):
            if not broker_listening(self._settings, timeout_s=self._connect_timeout_s):
                continue
            try:
                producer = self._connect()
            except BrokerUnavailable as exc:
                log.debug("broker still down: %s", exc)
                continue
            with self._lock:
                closing = self._closing.is_set()
                if not closing:
                    self._producer, self._down = producer, None
                    self._checked_at = time.monotonic()
                self._probing = False
            if closing:
                _close(producer, 0)
            else:
                log.warning("broker reachable again; accepting events")
            return
        with self._lock:
            self._probing = False

    def _check(self, producer: KafkaProducer) -> None:
        try:
            if not broker_answers(self._settings, timeout_s=self._connect_timeout_s):
                self._broker_failed("the broker did not answer a metadata request", producer)
        finally:
            with self._lock:
                self._checking = False

    def _close_producer(self, timeout_s: float) -> None:
        """Stop using the producer (closing was set), flushing what is pending for ``timeout_s``."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            _close(producer, timeout_s)
