"""``/metrics`` gauges of the recompute queues the workers share (``services.attribution.dirty``).

``closedloop_recompute_queued{queue}``: committed batches' impacts not yet resolved, and deals
and root contacts marked dirty not yet recomputed; ``closedloop_recompute_oldest_seconds``:
how long the oldest dirty deal has waited (how stale the freshest report can be, beyond the
consumer lag). Read from the database at scrape time, like the conflict gauges: the workers
write the queues, and none of them serves HTTP. An unreachable database leaves them out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from services.core.db.schema import DirtyDealRow, DirtyRootRow, PendingImpactRow

log = logging.getLogger("closedloop.api")
QUEUES = (("impacts", PendingImpactRow), ("deals", DirtyDealRow), ("roots", DirtyRootRow))


class WorkQueueGauges(Collector):
    """The recompute queues' lengths and the oldest dirty deal's age, counted when scraped."""

    def __init__(self, sessions: Callable[[], sessionmaker[Session]]) -> None:
        self._sessions = sessions

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from _families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._sessions()() as session:
                counts = {
                    name: int(session.scalar(select(func.count()).select_from(table)) or 0)
                    for name, table in QUEUES
                }
                oldest = session.scalar(select(func.min(DirtyDealRow.marked_at)))
        except (SQLAlchemyError, AttributeError) as exc:  # no database, or not started yet
            log.debug("work queue gauges skipped: %r", exc)
            return
        queued, age = _families()
        for name, count in counts.items():
            queued.add_metric([name], count)
        age.add_metric([], 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds())
        yield queued
        yield age


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "closedloop_recompute_queued",
            "Work the workers have queued after a commit: impacts, dirty deals, dirty roots",
            labels=["queue"],
        ),
        GaugeMetricFamily(
            "closedloop_recompute_oldest_seconds",
            "Age of the oldest deal waiting to be recomputed (0 when none waits)",
        ),
    )
