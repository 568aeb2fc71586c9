"""Inputs for the established attribution packages we cross-check and benchmark against.

Both take the same paths as our models: ``marketing-attribution-models`` a polars frame of
grouped journeys, ChannelAttribution a pandas frame of path / conversions / nulls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.domain.paths import Path, aggregate_paths


def mam_model(paths: Sequence[Path]) -> Any:
    """A ``mam.MAM`` over the paths (grouped journeys with their occurrences)."""
    import mam
    import polars as pl

    merged = aggregate_paths(paths)
    frame = pl.DataFrame(
        {
            "journey": [" > ".join(x.channels) for x in merged],
            "conv": [x.converted for x in merged],
            "occurrences": [x.count for x in merged],
        }
    )
    return mam.MAM(frame, "grouped_journey", "journey", "conv", occurrences_colname="occurrences")


def channelattribution_frame(paths: Sequence[Path]) -> Any:
    """A pandas frame of distinct paths (``a>b``) with their conversions and nulls."""
    import pandas as pd

    tally: dict[str, list[int]] = {}
    for x in aggregate_paths(paths):
        counts = tally.setdefault(" > ".join(x.channels), [0, 0])
        counts[0 if x.converted else 1] += x.count
    return pd.DataFrame(
        {
            "path": list(tally),
            "conv": [c[0] for c in tally.values()],
            "null": [c[1] for c in tally.values()],
        }
    )


def channelattribution_markov(paths: Sequence[Path], *, order: int = 1) -> Any:
    """ChannelAttribution's (simulated) Markov model on the paths, with the settings we check.

    ``seed=0`` for repeatability; ``nsim_start=1e6`` and ``max_step=100`` because its default
    step cap (the longest observed path) cuts simulated walks short and biases removal effects
    down by 2–3 points.
    """
    import ChannelAttribution as ca

    return ca.markov_model(
        channelattribution_frame(paths),
        "path",
        "conv",
        var_null="null",
        order=order,
        out_more=True,
        sep=">",
        seed=0,
        nsim_start=1e6,
        max_step=100,
        verbose=False,
        flg_pro=False,
    )
