"""The SLA report's clock: cached hand-offs are read as of each request's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.api.params import Period
from services.api.sla import Handoff, HandoffCache, as_of, sla_report

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday: ISO week 2026-W10


def test_a_first_response_after_now_is_none_yet_and_breaches_once_overdue() -> None:
    found = [
        Handoff("a", T0, T0 + timedelta(hours=30)),  # answered late, at 30 h
        Handoff("b", T0, T0 + timedelta(hours=2)),  # answered in time
        Handoff("c", T0 + timedelta(days=9), None),  # an MQL after both clocks below
    ]
    at_10h = as_of(found, T0 + timedelta(hours=10))
    assert [(h.contact_id, h.responded_at) for h in at_10h] == [
        ("a", None),
        ("b", T0 + timedelta(hours=2)),
    ]
    period = Period(None, None)
    early = sla_report(found, period=period, now=T0 + timedelta(hours=10), sla_hours=24)
    assert (early.overall.mqls, early.overall.responded, early.overall.breached) == (2, 1, 0)
    # At 26 h, a has had no response for more than 24 h: breached while still unanswered.
    overdue = sla_report(found, period=period, now=T0 + timedelta(hours=26), sla_hours=24)
    assert (overdue.overall.responded, overdue.overall.breached) == (1, 1)
    assert [b.contact_id for b in overdue.breaches] == ["a"]
    assert overdue.breaches[0].responded_at is None
    late = sla_report(found, period=period, now=T0 + timedelta(hours=40), sla_hours=24)
    assert (late.overall.responded, late.overall.breached) == (2, 1)
    assert late.overall.median_hours == 16.0  # (2 + 30) / 2


def test_the_cache_builds_once_per_key_and_forgets_the_oldest() -> None:
    cache, calls = HandoffCache(max_entries=2), []

    def build(n: int) -> list[Handoff]:
        calls.append(n)
        return [Handoff(str(n), T0, None)]

    assert cache.get_or_build(("v1", 1), lambda: build(1))[0].contact_id == "1"
    assert cache.get_or_build(("v1", 1), lambda: build(99))[0].contact_id == "1"
    cache.get_or_build(("v2", 1), lambda: build(2))
    cache.get_or_build(("v3", 1), lambda: build(3))
    cache.get_or_build(("v1", 1), lambda: build(4))  # evicted: built again
    assert calls == [1, 2, 3, 4]
