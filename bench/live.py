"""A live stream for a benchmark to run beside: real workers applying a steady event load.

``live_stream(db, workers=N, rate=R)`` starts a bundled broker, creates a topic, starts N
``closedloop worker`` processes on the database ``db`` (one consumer group) and a producer
publishing simulated CRM histories into the topic at R events/s (``bench.load``: batches of
100, as ingest publishes them). It yields a ``LiveStream`` once the workers have caught up
with the load (or after ``catch_up_s``, the backlog then says by how much they did not), and
stops it all afterwards. ``LiveStream.window()`` measures a stretch of it: events applied per
second, the backlog at the end, CPU seconds per process (``bench.cpu``), load average.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.common import broker_process, worker_processes
from bench.cpu import CpuMeter, load_average
from bench.load import BackgroundLoad, topic_sender
from services.core.db.engine import make_engine
from services.core.kafka import ensure_topics
from services.core.settings import Settings

# Events accepted but not yet stored that still count as keeping up (a few poll batches).
KEPT_UP_BACKLOG = 500


def stored_events(engine: Engine) -> int:
    """Return how many events the database holds."""
    with engine.connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM events")) or 0


@dataclass
class LiveStream:
    """Running workers and their load; ``window`` measures a stretch of the stream."""

    engine: Engine
    load: BackgroundLoad
    workers: list[subprocess.Popen[bytes]]
    database: str
    broker_pid: int
    stored_before: int
    logs: Path
    caught_up_s: float | None = None  # None: still behind when the catch-up wait ended
    others: dict[str, list[int]] = field(default_factory=dict)

    def applied(self) -> int:
        """Events the workers stored since the stream started."""
        return stored_events(self.engine) - self.stored_before

    def check_alive(self) -> None:
        """Raise, with the tails of their logs, if a worker has exited."""
        if all(p.poll() is None for p in self.workers):
            return
        tails = {p.name: p.read_text(errors="replace")[-2000:] for p in self.logs.glob("w*.log")}
        raise RuntimeError(f"a live worker exited: {tails}")

    def backlog(self) -> int:
        """Events published but not yet stored."""
        return self.load.sent - self.applied()

    @contextmanager
    def window(self, out: dict[str, Any]) -> Iterator[None]:
        """Measure the stream while the block runs; put the figures in ``out``."""
        groups = {
            "worker": [p.pid for p in self.workers],
            "broker": [self.broker_pid],
            "bench": [os.getpid()],  # and wrk, once reaped (a child of the bench)
            **self.others,
        }
        meter = CpuMeter(self.database, groups)
        out["load_average_before"] = load_average()
        stored, sent = stored_events(self.engine), self.load.sent
        meter.start()
        started = time.perf_counter()
        yield
        cpu = meter.stop()
        seconds = time.perf_counter() - started
        self.check_alive()
        applied = stored_events(self.engine) - stored
        out |= {
            "seconds": round(seconds, 1),
            "published_events_per_s": round((self.load.sent - sent) / seconds),
            "applied_events_per_s": round(applied / seconds),
            "backlog_events_at_end": self.backlog(),
            "producer_behind_schedule_s": round(self.load.behind_s(), 2),
            "cpu_s": cpu,
            "load_average_after": load_average(),
        }


def _catch_up(stream: LiveStream, timeout_s: float) -> float | None:
    """Wait until the workers keep up with the load; return when, or None at the timeout."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        stream.check_alive()
        applied = stream.applied()
        if applied and stream.load.sent - applied <= KEPT_UP_BACKLOG:
            return time.perf_counter() - started
        time.sleep(0.2)
    return None


@contextmanager
def live_stream(
    db: str,
    *,
    workers: int = 1,
    rate: int = 1000,
    catch_up_s: float = 60.0,
    env: dict[str, str] | None = None,
) -> Iterator[LiveStream]:
    """Run ``workers`` workers on ``db`` consuming a producer at ``rate`` events/s (``env``:
    more settings for the workers)."""
    extra = env or {}
    with broker_process() as (bootstrap, broker_pid), tempfile.TemporaryDirectory() as tmp:
        topic = f"live-{uuid.uuid4().hex[:6]}"
        settings = Settings(
            _env_file=None, database_url=db, kafka_bootstrap_servers=bootstrap, events_topic=topic
        )
        ensure_topics(settings)
        env = {
            "CLOSEDLOOP_DATABASE_URL": db,
            "CLOSEDLOOP_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLOSEDLOOP_EVENTS_TOPIC": topic,
            "CLOSEDLOOP_DEAD_LETTER_TOPIC": f"{topic}-dead",
            "CLOSEDLOOP_CONSUMER_GROUP": f"g-{topic}",
            **extra,
        }
        engine = make_engine(db)
        try:
            before = stored_events(engine)
            with (
                worker_processes(workers, env, Path(tmp)) as procs,
                BackgroundLoad(topic_sender(settings), rate=rate) as load,
            ):
                stream = LiveStream(
                    engine, load, procs, db.rsplit("/", 1)[1], broker_pid, before, Path(tmp)
                )
                stream.caught_up_s = _catch_up(stream, catch_up_s)
                yield stream
            if load.errors:
                raise RuntimeError(f"the live producer failed: {load.errors[:3]}")
        finally:
            engine.dispose()
