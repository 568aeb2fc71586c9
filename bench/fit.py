"""Fitting the data-driven models: ours (exact) against two established packages, same paths.

100,000 paths over 12 channels (seeded, with conversion odds that depend on the channels),
timed end to end from the same list of paths: ours (``fit_markov`` exact absorbing chain,
``fit_shapley`` exact Zhao et al.), ``marketing-attribution-models`` (``run_markov``,
``run_shapley``) and ChannelAttribution (``markov_model``, simulation-based). The packages are
test-only dependencies (``pip install -e '.[dev]'``); a missing one is reported, not faked.
The packages' own input preparation (building their data frames) is counted, as it is part
of what a user pays.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from bench.common import median_of, timer
from services.domain.markov import fit_markov
from services.domain.paths import Path
from services.domain.shapley import fit_shapley
from tests.support.packages import channelattribution_markov, mam_model

CHANNELS = [
    "paid_search",
    "paid_social",
    "email",
    "webinar",
    "events",
    "content",
    "organic_search",
    "outbound_sales",
    "partner",
    "display",
    "referral",
    "direct",
]


def make_paths(n: int, *, seed: int = 7) -> list[Path]:
    """Seeded paths: 1-8 steps, each channel with its own pull towards conversion."""
    rng = random.Random(seed)
    pull = {c: rng.uniform(0.02, 0.12) for c in CHANNELS}
    paths = []
    for _ in range(n):
        steps = tuple(rng.choice(CHANNELS) for _ in range(rng.randint(1, 8)))
        converted = rng.random() < min(0.9, sum(pull[c] for c in set(steps)))
        paths.append(Path(steps, converted, value=rng.randint(1000, 100000) if converted else 0))
    return paths


def _time(fn: Callable[[], Any], runs: int) -> float:
    return median_of(runs, lambda: _seconds(fn))[0]


def _seconds(fn: Callable[[], Any]) -> float:
    with timer() as elapsed:
        fn()
        return elapsed()


def run(*, quick: bool) -> dict[str, Any]:
    """Time every fit on the same paths; return seconds per fit (medians)."""
    n = 10_000 if quick else 100_000
    runs = 1 if quick else 3
    paths = make_paths(n)
    out: dict[str, Any] = {
        "paths": n,
        "channels": len(CHANNELS),
        "runs": runs,
        "ours_markov_s": _time(lambda: fit_markov(paths), runs),
        "ours_markov_order2_s": _time(lambda: fit_markov(paths, order=2), runs),
        "ours_shapley_s": _time(lambda: fit_shapley(paths), runs),
    }
    try:
        out["mam_markov_s"] = _time(lambda: mam_model(paths).run_markov(), runs)
        out["mam_shapley_s"] = _time(lambda: mam_model(paths).run_shapley(), runs)
    except ImportError as exc:
        out["mam"] = f"not installed: {exc}"
    try:
        out["channelattribution_markov_s"] = _time(lambda: channelattribution_markov(paths), runs)
    except ImportError as exc:
        out["channelattribution"] = f"not importable: {exc}"
    return out
