"""Per-credential token buckets: a client over its rate gets 429 before anything is published.

Each credential (an API key id, or a webhook provider's name) owns a bucket of ``burst``
tokens refilled at ``rate`` a second; a request takes one. An empty bucket answers how long
until the next token, which becomes ``Retry-After``. The table is bounded: a full bucket is
the same as no bucket, so the least recently used ones are dropped when it grows past
``max_keys`` — and only authenticated credentials ever get one, so an attacker cannot fill it.
The clock is passed in, so the arithmetic is tested without sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from services.core.http import Problem


class RateLimiter:
    """Token buckets keyed by credential; thread-safe."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate, self._burst, self._max_keys, self._clock = rate, float(burst), max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take a token for ``key``: return 0 if allowed, else the seconds until one is due."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self._rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return wait

    def check(self, key: str) -> None:
        """Take a token for ``key`` or raise the 429 problem with ``Retry-After``."""
        wait = self.take(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise Problem(
                429,
                "Too Many Requests",
                f"this credential is over its rate limit of {self._rate:g} requests a second "
                f"(burst {self._burst:g}); retry after {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
