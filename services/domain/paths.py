"""Channel paths: the input of the data-driven models (Markov, Shapley).

A path is the ordered list of channels of one decided deal's journey (or of ``count``
identical journeys) and whether it converted. Empty journeys are left out (contract §4).

Invariants:
- ``Path.channels`` is non-empty, every channel is a non-empty string; ``count >= 1``;
  ``value >= 0`` and ``value == 0`` unless ``converted`` (a lost deal carries no value);
  ``value`` is the *total* converted value of the ``count`` paths, in minor units.
- ``aggregate_paths`` merges identical ``(channels, converted)`` paths by summing counts
  and values and returns them sorted, so any model fitted on its output depends only on
  the multiset of paths, never on their input order.
- Everything here is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class Path:
    """One journey as a channel sequence (``count`` identical ones) and its outcome."""

    channels: tuple[str, ...]
    converted: bool
    value: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.channels, tuple):
            object.__setattr__(self, "channels", tuple(self.channels))
        if not self.channels:
            raise ValueError("a path needs at least one channel (empty journeys are left out)")
        if any(not isinstance(c, str) or not c for c in self.channels):
            raise ValueError(f"channels must be non-empty strings, got {self.channels!r}")
        for name in ("value", "count"):
            number = getattr(self, name)
            if isinstance(number, bool) or not isinstance(number, int):
                raise TypeError(f"{name} must be an int, got {number!r}")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if self.value < 0:
            raise ValueError(f"value must be >= 0, got {self.value}")
        if self.value and not self.converted:
            raise ValueError("a path that did not convert carries no value")


def collapse_repeats(channels: Sequence[str]) -> tuple[str, ...]:
    """Merge consecutive touches of the same channel into one step (A,A,B,A -> A,B,A)."""
    collapsed: list[str] = []
    for channel in channels:
        if not collapsed or collapsed[-1] != channel:
            collapsed.append(channel)
    return tuple(collapsed)


PathKey = tuple[tuple[str, ...], bool]


def tally_paths(paths: Iterable[Path]) -> dict[PathKey, tuple[int, int]]:
    """Sum (count, value) per distinct (channels, converted); totals are order-independent."""
    totals: dict[PathKey, tuple[int, int]] = {}
    for path in paths:
        key = (path.channels, path.converted)
        count, value = totals.get(key, (0, 0))
        totals[key] = (count + path.count, value + path.value)
    return totals


def aggregate_paths(paths: Iterable[Path]) -> tuple[Path, ...]:
    """Merge identical (channels, converted) paths and sort them deterministically."""
    return tuple(
        Path(channels=channels, converted=converted, value=value, count=count)
        for (channels, converted), (count, value) in sorted(tally_paths(paths).items())
    )


def channels_of(paths: Iterable[Path]) -> tuple[str, ...]:
    """Return the distinct channels of the paths, sorted."""
    return tuple(sorted({channel for path in paths for channel in path.channels}))


def split_by_channel(
    journey_channels: Sequence[str], channel_weights: dict[str, Fraction]
) -> list[Fraction]:
    """Split 1 over the journey's channels by weight, then evenly over each channel's touches.

    Channels missing from ``channel_weights`` weigh 0; negative weights count as 0. If
    every channel of the journey weighs 0, each distinct channel gets an equal share (the
    same rule with equal weights), so a non-empty journey always gets weights summing to 1.
    """
    if not journey_channels:
        return []
    touches: dict[str, int] = {}
    for channel in journey_channels:
        touches[channel] = touches.get(channel, 0) + 1
    raw = {c: max(Fraction(channel_weights.get(c, 0)), Fraction(0)) for c in touches}
    total = sum(raw.values(), Fraction(0))
    if total == 0:
        raw = dict.fromkeys(touches, Fraction(1))
        total = Fraction(len(touches))
    return [raw[c] / total / touches[c] for c in journey_channels]
