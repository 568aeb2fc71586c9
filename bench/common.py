"""Shared benchmark set-up: a broker, a database, a key, simulated events."""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.core.auth import create_key
from services.core.broker import free_port, start_bundled_broker
from services.core.db.engine import make_engine, make_sessionmaker
from services.simulate import generate
from tests.support.processes import start_service, stop


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


@contextmanager
def broker_process() -> Iterator[tuple[str, int]]:
    """Run the bundled broker (in memory) on a free port; yield its bootstrap and pid."""
    port = free_port()
    proc = start_bundled_broker(port)
    try:
        yield f"127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def parse_counts(text: str) -> list[int]:
    """Parse ``--workers 1,2,3`` or ``--events 100k,300k,1M`` into integers."""
    scale = {"k": 1_000, "m": 1_000_000}
    out = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if part:
            out.append(int(float(part[:-1]) * scale[part[-1]]) if part[-1] in scale else int(part))
    if not out or min(out) < 1:
        raise ValueError(f"expected positive counts separated by commas, got {text!r}")
    return out


@contextmanager
def worker_processes(
    count: int, env: dict[str, str], logs: Path, *, first: int = 1
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``count`` ``closedloop worker`` processes (one consumer group); stop them after.

    Their logs are ``logs/w<first>.log`` … ``logs/w<first + count - 1>.log``.
    """
    procs = [start_service("worker", env, logs / f"w{n}.log") for n in range(first, first + count)]
    try:
        yield procs
    finally:
        for proc in procs:  # all at once: one rebalance, not one per worker leaving
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            stop(proc)
