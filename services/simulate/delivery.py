"""How events reach the service in real life: out of order, some of them twice.

Both functions are pure; the same seed gives the same arrival order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any


def shuffle_with_duplicates(
    events: Sequence[dict[str, Any]], *, seed: int, duplicate_rate: float = 0.05
) -> list[dict[str, Any]]:
    """Return the events in a shuffled arrival order with ``duplicate_rate`` of them repeated.

    Each repeat is a verbatim copy (same ``event_id``, same content) of a distinct event, as an
    at-least-once webhook sender would redeliver it. Copies are independent dicts.
    """
    if not 0 <= duplicate_rate <= 1:
        raise ValueError("duplicate_rate must be between 0 and 1")
    rng = random.Random(seed)
    arrivals = [_copy(event) for event in events]
    repeated = rng.sample(range(len(arrivals)), round(len(arrivals) * duplicate_rate))
    arrivals.extend(_copy(arrivals[i]) for i in repeated)
    rng.shuffle(arrivals)
    return arrivals


def batches(events: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Yield consecutive batches of at most ``size`` events, in order."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    for offset in range(0, len(events), size):
        yield list(events[offset : offset + size])


def _copy(event: dict[str, Any]) -> dict[str, Any]:
    # Canonical events are flat apart from lists of ids: cheaper than deepcopy on millions.
    return {key: list(value) if isinstance(value, list) else value for key, value in event.items()}
