"""The report cache on its own: LRU bounds, and one build per key at a time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.api.cache import CachedBody, ReportCache


def body(text: str) -> CachedBody:
    return CachedBody(text.encode(), "application/json", ())


def test_hit_returns_the_stored_body_without_building() -> None:
    cache = ReportCache()
    assert cache.get_or_build("k", lambda: body("one")) == body("one")
    assert cache.get_or_build("k", lambda: pytest.fail("built twice")) == body("one")
    assert (cache.hits, cache.misses) == (1, 1)


def test_least_recently_used_entry_goes_first() -> None:
    cache = ReportCache(max_entries=2)
    cache.get_or_build("a", lambda: body("a"))
    cache.get_or_build("b", lambda: body("b"))
    cache.get_or_build("a", lambda: body("unused"))  # a is now more recent than b
    cache.get_or_build("c", lambda: body("c"))
    assert len(cache) == 2
    assert cache.get_or_build("a", lambda: body("rebuilt")) == body("a")
    assert cache.get_or_build("b", lambda: body("rebuilt")) == body("rebuilt")


def test_bytes_are_bounded_too() -> None:
    cache = ReportCache(max_entries=100, max_bytes=10)
    cache.get_or_build("a", lambda: body("aaaa"))
    cache.get_or_build("b", lambda: body("bbbb"))
    cache.get_or_build("c", lambda: body("cccc"))  # 12 bytes > 10: a goes
    assert len(cache) == 2
    cache.get_or_build("huge", lambda: body("x" * 11))  # larger than the cache: not kept
    assert len(cache) == 2


def test_concurrent_misses_of_one_key_build_once() -> None:
    cache = ReportCache()
    builds = 0
    release = threading.Event()

    def build() -> CachedBody:
        nonlocal builds
        builds += 1
        release.wait(5)
        return body("slow")

    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(cache.get_or_build, "k", build) for _ in range(8)]
        time.sleep(0.2)  # every caller is waiting on the one build
        release.set()
        assert {a.result(5) for a in answers} == {body("slow")}
    assert builds == 1


def test_a_failed_build_is_raised_to_its_waiters_and_not_stored() -> None:
    cache = ReportCache()
    started, release = threading.Event(), threading.Event()

    def failing() -> CachedBody:
        started.set()
        release.wait(5)
        raise RuntimeError("database went away")

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.get_or_build, "k", failing)
        started.wait(5)
        second = pool.submit(cache.get_or_build, "k", lambda: pytest.fail("built twice"))
        time.sleep(0.1)
        release.set()
        for answer in (first, second):
            with pytest.raises(RuntimeError, match="went away"):
                answer.result(5)
    assert len(cache) == 0
    assert cache.get_or_build("k", lambda: body("ok")) == body("ok")


def test_a_response_is_rebuilt_with_its_headers() -> None:
    cached = CachedBody(
        b"a,b\r\n", "text/csv; charset=utf-8", (("content-disposition", 'attachment; x="r.csv"'),)
    )
    response = cached.response()
    assert response.body == b"a,b\r\n"
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; x="r.csv"'
    assert response.headers["content-length"] == "5"
