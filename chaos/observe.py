"""Observers that run beside a scenario: the dashboard's report reads, and the processes' memory.

``ReportReader`` reads the dashboard's reports through the API in a loop, as the dashboard's
pages do (ROI, compare, funnel, influence, pipeline), and keeps each answer's status and
latency. ``MemorySampler`` samples every running service's resident set (``VmRSS``) at a
fixed interval. ``growth`` states the memory criterion: a process's memory is flat when the
median of the last third of its samples is within ``bound`` of the median of the middle third
(the first third is warm-up: imports, connection pools and the worker's event cache filling).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from chaos.pipeline import rss_kib
from chaos.reports import WIDE

DASHBOARD_READS: dict[str, tuple[str, dict[str, str]]] = {
    "roi": ("/v1/reports/roi", {"model": "linear", **WIDE}),
    "compare": ("/v1/reports/compare", WIDE),
    "funnel": ("/v1/reports/funnel", WIDE),
    "influence": ("/v1/reports/influence", WIDE),
    "pipeline": ("/v1/reports/pipeline", {"model": "linear"}),
}


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class _Loop:
    """A daemon thread calling ``step`` every ``every_s`` until stopped."""

    def __init__(self, step: Callable[[], None], every_s: float, name: str) -> None:
        self._step, self._every_s = step, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._step()
            self._stop.wait(self._every_s)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)


class ReportReader(_Loop):
    """Reads every dashboard report in turn, ``pause_s`` apart; keeps statuses and latencies."""

    def __init__(self, api_url: str, key: str, *, pause_s: float = 0.2) -> None:
        super().__init__(self._read_all, pause_s, "chaos-reports")
        self._http = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        self.latencies: dict[str, list[float]] = {name: [] for name in DASHBOARD_READS}
        self.failures: list[str] = []

    def _read_all(self) -> None:
        for name, (path, params) in DASHBOARD_READS.items():
            started = time.perf_counter()
            try:
                status = self._http.get(path, params=params).status_code
            except httpx.HTTPError as exc:
                self.failures.append(f"{name}: {exc!r}"[:200])
                continue
            if status != 200:
                self.failures.append(f"{name}: {status}")
            else:
                self.latencies[name].append(time.perf_counter() - started)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._http.close()

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"report_reads": sum(len(v) for v in self.latencies.values())}
        for name, values in self.latencies.items():
            worst = p95(values)
            out[f"report_p95_ms_{name}"] = None if worst is None else round(worst * 1000)
        out["report_failures"] = len(self.failures)
        return out


class MemorySampler(_Loop):
    """Samples ``VmRSS`` (KiB) of every process ``pids()`` names, every ``every_s``."""

    def __init__(self, pids: Callable[[], dict[str, int]], *, every_s: float) -> None:
        super().__init__(self._sample, every_s, "chaos-memory")
        self._pids = pids
        self.samples: dict[str, list[tuple[float, int]]] = {}

    def _sample(self) -> None:
        now = time.monotonic()
        for name, pid in self._pids().items():
            rss = rss_kib(pid)
            if rss is not None:
                self.samples.setdefault(name, []).append((now, rss))


def growth(samples: list[int]) -> tuple[int, int]:
    """(middle-third median, last-third median) of a process's RSS samples, in KiB."""
    third = max(1, len(samples) // 3)
    middle, last = samples[third : 2 * third] or samples, samples[2 * third :] or samples
    return int(statistics.median(middle)), int(statistics.median(last))


def flat(samples: list[int], *, bound_kib: int, bound_share: float) -> bool:
    """Whether the last third's median is within the bound of the middle third's."""
    middle, last = growth(samples)
    return last - middle <= max(bound_kib, int(middle * bound_share))


class ProgressWatch(_Loop):
    """Watches the workers' progress: the longest time nothing new was stored while
    acknowledged events waited (a stalled consumer group shows here)."""

    def __init__(self, acknowledged: Callable[[], int], stored: Callable[[], int]) -> None:
        super().__init__(self._sample, 0.5, "chaos-progress")
        self._acknowledged, self._stored = acknowledged, stored
        self._last: tuple[int, float] | None = None  # stored count, when it last moved
        self.longest_stall_s = 0.0

    def _sample(self) -> None:
        now = time.monotonic()
        try:
            acknowledged, stored = self._acknowledged(), self._stored()
        except Exception:  # noqa: BLE001 - the database is away: that is no progress
            if self._last is not None:
                self.longest_stall_s = max(self.longest_stall_s, now - self._last[1])
            return
        if self._last is None or stored != self._last[0] or stored >= acknowledged:
            self._last = (stored, now)
            return
        self.longest_stall_s = max(self.longest_stall_s, now - self._last[1])
