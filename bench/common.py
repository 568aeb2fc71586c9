"""Shared benchmark set-up: a broker, a database, a key, simulated events."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from services.core.auth import create_key
from services.core.db.engine import make_engine, make_sessionmaker
from services.simulate import generate


def simulated_events(target: int, *, seed: int = 42) -> list[dict[str, Any]]:
    """Return about ``target`` realistic canonical events (a simulated CRM history)."""
    deals = max(10, target // 25)
    events = generate(seed=seed, deals=deals, start=datetime(2026, 1, 1, tzinfo=UTC), days=180)
    while len(events) < target:
        deals = int(deals * target / max(1, len(events)) * 1.05) + 1
        events = generate(seed=seed, deals=deals, start=datetime(2026, 1, 1, tzinfo=UTC), days=180)
    return events[:target] if len(events) > target * 1.5 else events


def make_key(database_url: str, scopes: list[str]) -> str:
    """Create an API key in the database and return its secret."""
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session, session.begin():
        key = create_key(session, name="bench", scopes=scopes)
    engine.dispose()
    return key


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    """Run ``fn`` ``runs`` times; return the median and all figures."""
    figures = [fn() for _ in range(runs)]
    return statistics.median(figures), figures


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    """Yield a function returning the seconds elapsed since entering."""
    start = time.perf_counter()
    yield lambda: time.perf_counter() - start


def memory_kib(pid: int) -> dict[str, int]:
    """Return a process's ``VmRSS`` and peak ``VmHWM`` in KiB (empty once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            lines = status.read().splitlines()
    except OSError:
        return {}
    return {
        name: int(rest.split()[0])
        for name, _, rest in (line.partition(":") for line in lines)
        if name in ("VmRSS", "VmHWM")
    }


def peak_rss_bytes(pid: int) -> int:
    """Return a process's peak resident set size (``VmHWM``), or 0 once it has gone."""
    return memory_kib(pid).get("VmHWM", 0) * 1024
