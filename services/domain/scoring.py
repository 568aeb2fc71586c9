"""The closed-loop lead score over a Markov snapshot: memoised per channel sequence (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.domain.datadriven import markov_from_json
from services.domain.markov import MarkovFit, conversion_probability, journey_state, state_label


class Scorer:
    """A rebuilt Markov snapshot with a memo of scores per channel sequence."""

    def __init__(self, results: Mapping[str, Any]) -> None:
        self.fit: MarkovFit = markov_from_json(dict(results))
        self._memo: dict[tuple[str, ...], tuple[float, str]] = {}

    def score(self, channels: Sequence[str]) -> tuple[float, str]:
        """Return the journey's conversion probability and its current state's label."""
        key = tuple(channels)
        hit = self._memo.get(key)
        if hit is None:
            hit = (
                conversion_probability(self.fit, key),
                state_label(journey_state(self.fit, key)),
            )
            self._memo[key] = hit
        return hit
