"""The decoded-event cache shared by the worker's threads (issue 9, item 15).

Two threads putting into a full, unguarded cache both evicted "the oldest" entry, and the second
``del`` raised ``KeyError``, which ended the worker. Here several threads hammer ``put`` and
``get`` on a small full cache with a tiny switch interval (so they interleave between almost
every bytecode); nothing may raise, the size bound must hold, and every ``get`` must answer the
event of the payload asked for.
"""

from __future__ import annotations

import random
import sys
import threading
from datetime import UTC, datetime, timedelta

import orjson

from services.attribution.event_cache import EventCache
from services.core.events import EVENT_ADAPTER, Event

THREADS = 6
ROUNDS = 4000
SIZE = 8


def touch(n: int) -> tuple[str, Event]:
    """A touch's payload text, and the event a correct cache answers for it."""
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
    item = {
        "event_id": f"t-{n}",
        "type": "touch",
        "occurred_at": at.isoformat(),
        "campaign_id": f"c-{n % 5}",
        "contact_id": f"p-{n}",
    }
    return orjson.dumps(item).decode(), EVENT_ADAPTER.validate_python(item)


def hammer(cache: EventCache, pool: list[tuple[str, Event]], seed: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        start.wait()
        try:
            for _ in range(ROUNDS):
                payload, event = rng.choice(pool)
                if rng.random() < 0.6:
                    cache.put(payload, event)
                else:
                    got = cache.get(payload)
                    assert got.event_id == event.event_id, (got.event_id, event.event_id)
        except BaseException as exc:  # noqa: BLE001 - any failure in a thread is the finding
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    return errors


def test_full_cache_survives_threads_hammering_it() -> None:
    pool = [touch(n) for n in range(64)]
    cache = EventCache(SIZE)
    for payload, event in pool[:SIZE]:
        cache.put(payload, event)  # full from the start: every put evicts
    for seed in range(3):
        errors = hammer(cache, pool, seed)
        assert errors == [], f"{len(errors)} thread(s) failed, first: {errors[0]!r}"
        assert len(cache) == SIZE


def test_eviction_is_first_in_first_out_and_a_miss_decodes() -> None:
    cache = EventCache(2)
    (a, ea), (b, eb), (c, ec) = touch(1), touch(2), touch(3)
    cache.put(a, ea)
    cache.put(b, eb)
    cache.put(c, ec)  # evicts a
    assert len(cache) == 2
    decoded = cache.get(a)  # a miss: decoded from the payload, then kept (evicting b)
    assert decoded == ea and decoded is not ea
    assert cache.get(c) is ec
    assert cache.get(a) is decoded


def test_domain_caches_give_the_same_credits_under_contention() -> None:
    # The other state both worker threads (consume loop, maintenance) touch: the pure
    # domain's memo caches (per-shape plans, remainder rows, model resolutions). Hits are one
    # dictionary lookup; misses and clears take the cache's lock. Checked: threads crediting
    # varied journeys while another clears the caches get exactly the single-threaded
    # credits, and never raise.
    from services.domain import Touch, builtin_models
    from services.domain.attribute import clear_caches, deal_credits

    models = builtin_models(half_life_days=7.0)
    closed = datetime(2026, 6, 1, tzinfo=UTC)
    rng = random.Random(7)
    deals = []
    for n in range(120):
        length = rng.randint(1, 12)
        journey = [
            Touch(
                event_id=f"d{n}-t{i}",
                occurred_at=closed - timedelta(days=40 - 3 * i, hours=rng.randint(0, 5)),
                campaign_id=f"c{rng.randint(0, 4)}",
                lead_created=rng.random() < 0.2,
            )
            for i in range(length)
        ]
        deals.append((journey, rng.randint(1, 10**7), closed - timedelta(days=rng.randint(1, 30))))

    def credit(deal: tuple[list[Touch], int, datetime]) -> dict[str, list[int]]:
        journey, amount, created = deal
        result = deal_credits(
            journey, amount_minor=amount, created_at=created, closed_at=closed, models=models
        )
        return result.credits

    clear_caches()
    expected = [credit(d) for d in deals]
    errors: list[BaseException] = []
    mismatches: list[int] = []
    done = threading.Event()

    def work(seed: int) -> None:
        order = list(range(len(deals)))
        random.Random(seed).shuffle(order)
        try:
            for _ in range(3):
                for i in order:
                    if credit(deals[i]) != expected[i]:
                        mismatches.append(i)
        except BaseException as exc:  # noqa: BLE001 - any failure in a thread is the finding
            errors.append(exc)

    def clearing() -> None:
        while not done.is_set():
            clear_caches()

    workers = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    clearer = threading.Thread(target=clearing)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        clearer.start()
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
    finally:
        done.set()
        clearer.join()
        sys.setswitchinterval(previous)
        clear_caches()
    assert errors == [] and mismatches == []
