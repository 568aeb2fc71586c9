"""Data-driven models as attribution models: a fitted snapshot's per-channel weights.

A ``ChannelWeightModel`` carries the removal effects (markov) or Shapley values (shapley) of
one fit snapshot; a deal's amount is split over the channels of its journey in proportion to
them, then evenly over each channel's touches (contract §4). The JSON helpers store a fit's
inputs and results in a snapshot row and read them back exactly (fractions as "n/d" text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .markov import MarkovFit, State, transition_rows
from .paths import split_by_channel
from .shapley import ShapleyFit

DATA_DRIVEN = ("markov", "shapley")


@dataclass(frozen=True)
class ChannelWeightModel:
    """A data-driven model frozen at one fit snapshot."""

    model_id: str
    fit_id: int
    channel_weights: Mapping[str, Fraction] = field(default_factory=dict)
    description: str = ""
    builtin: bool = True

    @property
    def kind(self) -> str:
        return self.model_id

    def params(self) -> dict[str, str]:
        """Return the model's parameters for the API."""
        return {"fit_id": str(self.fit_id)}

    def weights(self, journey_channels: Sequence[str]) -> list[Fraction]:
        """Return per-touch weights for a journey's channels (exact, summing to 1)."""
        return split_by_channel(journey_channels, dict(self.channel_weights))


def _text(value: Fraction) -> str:
    return str(value)


def _state(state: State) -> list[str]:
    return list(state)


def markov_to_json(fit: MarkovFit) -> dict[str, Any]:
    """Serialise a Markov fit: everything needed to explain it and to score journeys."""
    return {
        "order": fit.order,
        "collapse": fit.collapse,
        "channels": list(fit.channels),
        "conversion_probability": _text(fit.conversion_probability),
        "removal_effects": {c: _text(v) for c, v in fit.removal_effects.items()},
        "transitions": [
            [_state(a), _state(b), n] for a, row in fit.transitions.items() for b, n in row.items()
        ],
        "to_conversion": [[_state(s), n] for s, n in fit.to_conversion.items()],
        "to_null": [[_state(s), n] for s, n in fit.to_null.items()],
        "absorption": [[_state(s), _text(p)] for s, p in fit.absorption.items()],
        "path_count": fit.path_count,
        "distinct_paths": fit.distinct_paths,
        "conversions": fit.conversions,
        "conversion_value": fit.conversion_value,
        "exact": fit.exact,
        "max_error": fit.max_error,
        "transition_summary": [
            {"from": a, "to": b, "count": n, "probability": float(p)}
            for a, b, n, p in transition_rows(fit)
        ],
    }


def markov_from_json(data: Mapping[str, Any]) -> MarkovFit:
    """Rebuild a Markov fit from ``markov_to_json`` output."""
    transitions: dict[State, dict[State, int]] = {}
    for a, b, n in data["transitions"]:
        transitions.setdefault(tuple(a), {})[tuple(b)] = int(n)
    absorption = {tuple(s): Fraction(p) for s, p in data["absorption"]}
    return MarkovFit(
        order=int(data["order"]),
        collapse=bool(data["collapse"]),
        channels=tuple(data["channels"]),
        states=tuple(sorted(absorption, key=lambda s: (len(s), s))),
        transitions=transitions,
        to_conversion={tuple(s): int(n) for s, n in data["to_conversion"]},
        to_null={tuple(s): int(n) for s, n in data["to_null"]},
        absorption=absorption,
        conversion_probability=Fraction(data["conversion_probability"]),
        removal_effects={c: Fraction(v) for c, v in data["removal_effects"].items()},
        path_count=int(data["path_count"]),
        distinct_paths=int(data["distinct_paths"]),
        conversions=int(data["conversions"]),
        conversion_value=int(data["conversion_value"]),
        exact=bool(data["exact"]),
        max_error=float(data["max_error"]),
    )


def shapley_to_json(fit: ShapleyFit) -> dict[str, Any]:
    """Serialise a Shapley fit (values per channel, the worth of each channel set)."""
    return {
        "characteristic": fit.characteristic,
        "channels": list(fit.channels),
        "values": {c: _text(v) for c, v in fit.values.items()},
        "dividends": [[sorted(s), n] for s, n in fit.dividends.items()],
        "total": fit.total,
        "path_count": fit.path_count,
        "distinct_sets": fit.distinct_sets,
        "conversions": fit.conversions,
        "conversion_value": fit.conversion_value,
        "exact": True,
    }


def channel_weights(model_id: str, results: Mapping[str, Any]) -> dict[str, Fraction]:
    """Return a stored fit's per-channel weights (removal effects or Shapley values)."""
    table = results["removal_effects"] if model_id == "markov" else results["values"]
    return {c: Fraction(v) for c, v in table.items()}
