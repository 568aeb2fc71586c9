"""Markov-chain attribution: removal effects from an absorbing chain, solved exactly.

The chain (Anderl et al. 2016, "Mapping the customer journey"; the construction of the
``marketing-attribution-models`` package, ``mam.models.markov``, and of ChannelAttribution):

- Every path is ``start -> s1 -> ... -> sn -> (conversion | null)``, weighted by its
  ``count``. Transition probabilities are counts divided by the row total.
- Consecutive repeats of a channel are one step (A,A,B is A,B). This is what the package
  does by default (``transition_to_same_state=False`` drops every ``c -> c`` pair, which
  is the same as collapsing runs). Self-loops would not change absorption probabilities
  anyway, only how many steps a walk takes.
- Order k >= 1: a state is the tuple of the last ``min(t, k)`` channels after the t-th
  (collapsed) step, so a path of length n visits ``(c1), (c1,c2), ..., (c_{n-k+1}..c_n)``;
  order 1 states are 1-tuples. ``start`` is the empty tuple.
- P(conversion) is the absorption probability into ``conversion`` from ``start``, from
  the linear system ``T_i x_i - sum_j n_ij x_j = n_i,conv`` (i.e. ``(I - Q) x = R``).
- Removing channel c deletes every state that contains c and sends the transitions into
  those states to ``null`` (the package moves the column into ``null``; same thing). The
  removal effect is ``1 - P(conv without c) / P(conv)``, 0 for every channel when
  P(conv) = 0; it always lies in [0, 1]. The removal effects are *not* normalised (the
  package's ``removal_effect`` table, not its normalised attribution weights).
- Paths' ``value`` does not enter the chain (neither package uses it to fit).

Exactness: with at most ``exact_state_limit`` transient states (every order-1 chain of up
to that many channels) the system is solved with ``Fraction`` — the numbers are exact.
Larger chains are solved by the same elimination in float64 (the matrix ``I - Q`` is a
diagonally dominant M-matrix, so elimination without pivoting is stable: relative error
of order ``states * 1e-16``), and ``MarkovFit.exact`` is False. Either way the same paths
always give the same numbers: states are processed in sorted order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeAlias

from .paths import Path, aggregate_paths, collapse_repeats, split_by_channel

State: TypeAlias = tuple[str, ...]
START: State = ()
CONVERSION = "(conversion)"
NULL = "(null)"
START_LABEL = "(start)"
DEFAULT_EXACT_STATE_LIMIT = 64


@dataclass(frozen=True)
class MarkovFit:
    """A fitted absorbing chain: counts, absorption probabilities and removal effects."""

    order: int
    collapse: bool
    channels: tuple[str, ...]
    states: tuple[State, ...]
    transitions: Mapping[State, Mapping[State, int]]
    to_conversion: Mapping[State, int]
    to_null: Mapping[State, int]
    absorption: Mapping[State, Fraction]
    conversion_probability: Fraction
    removal_effects: Mapping[str, Fraction]
    path_count: int
    distinct_paths: int
    conversions: int
    conversion_value: int
    exact: bool


def path_states(channels: Sequence[str], order: int = 1, *, collapse: bool = True) -> list[State]:
    """Return the chain states a channel sequence visits after ``start``."""
    _check_order(order)
    steps = collapse_repeats(channels) if collapse else tuple(channels)
    return [steps[max(0, t - order) : t] for t in range(1, len(steps) + 1)]


def _check_order(order: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")


def _count(
    paths: Sequence[Path], order: int, collapse: bool
) -> tuple[dict[State, dict[State, int]], dict[State, int], dict[State, int]]:
    moves: dict[State, dict[State, int]] = {START: {}}
    to_conversion: dict[State, int] = {}
    to_null: dict[State, int] = {}
    for path in paths:
        previous = START
        for state in path_states(path.channels, order, collapse=collapse):
            row = moves[previous]
            row[state] = row.get(state, 0) + path.count
            moves.setdefault(state, {})
            previous = state
        ends = to_conversion if path.converted else to_null
        ends[previous] = ends.get(previous, 0) + path.count
    return moves, to_conversion, to_null


Number: TypeAlias = Fraction | float


def _solve(
    states: Sequence[State],
    moves: Mapping[State, Mapping[State, int]],
    to_conversion: Mapping[State, int],
    totals: Mapping[State, int],
    *,
    exact: bool,
) -> dict[State, Number]:
    """Solve ``x_i = sum_j p_ij x_j + p_i,conv`` over ``states``; other targets count as 0.

    Gaussian elimination in the given order on sparse rows (no pivoting needed: every
    row of ``I - Q`` is diagonally dominant and each state reaches absorption).
    """
    one: Number = Fraction(1) if exact else 1.0
    keep = set(states)
    rows: dict[State, dict[State, Number]] = {}
    rhs: dict[State, Number] = {}
    for i in states:
        total = totals[i]
        row: dict[State, Number] = {i: one}
        for j, n in moves[i].items():
            if j in keep:
                row[j] = row.get(j, 0 * one) - (Fraction(n, total) if exact else n / total)
        rows[i] = row
        conv = to_conversion.get(i, 0)
        rhs[i] = Fraction(conv, total) if exact else conv / total
    position = {s: k for k, s in enumerate(states)}
    for k, pivot in enumerate(states):
        prow = rows[pivot]
        diag = prow.pop(pivot)
        for col in prow:
            prow[col] /= diag
        rhs[pivot] /= diag
        for other in states[k + 1 :]:
            orow = rows[other]
            factor = orow.pop(pivot, None)
            if not factor:
                continue
            for col, coef in prow.items():
                orow[col] = orow.get(col, 0 * one) - factor * coef
            rhs[other] -= factor * rhs[pivot]
    solution: dict[State, Number] = {}
    for pivot in reversed(states):
        value = rhs[pivot]
        for col, coef in rows[pivot].items():
            if position[col] > position[pivot]:
                value -= coef * solution[col]
        solution[pivot] = value
    return solution


def _elimination_order(states: Iterable[State]) -> list[State]:
    # Longest tuples first: shorter (prefix) states only feed longer ones, so eliminating
    # the long block first keeps the rows of prefix states from filling in.
    return sorted(states, key=lambda s: (-len(s), s))


def fit_markov(
    paths: Iterable[Path],
    *,
    order: int = 1,
    collapse: bool = True,
    exact_state_limit: int = DEFAULT_EXACT_STATE_LIMIT,
) -> MarkovFit:
    """Fit an order-k absorbing Markov chain on the paths and compute removal effects."""
    _check_order(order)
    merged = aggregate_paths(paths)
    moves, to_conversion, to_null = _count(merged, order, collapse)
    states = _elimination_order(moves)
    exact = len(states) <= exact_state_limit
    totals = {
        s: sum(moves[s].values()) + to_conversion.get(s, 0) + to_null.get(s, 0) for s in states
    }
    channels = tuple(sorted({c for s in states for c in s}))
    if not merged:
        absorption: dict[State, Number] = {START: Fraction(0)}
    else:
        absorption = _solve(states, moves, to_conversion, totals, exact=exact)
    base = Fraction(absorption[START])
    effects: dict[str, Fraction] = {}
    for channel in channels:
        if base == 0:
            effects[channel] = Fraction(0)
            continue
        kept = [s for s in states if channel not in s]
        without = _solve(kept, moves, to_conversion, totals, exact=exact)[START]
        effects[channel] = min(max(1 - Fraction(without) / base, Fraction(0)), Fraction(1))
    return MarkovFit(
        order=order,
        collapse=collapse,
        channels=channels,
        states=tuple(sorted(states, key=lambda s: (len(s), s))),
        transitions={s: dict(sorted(moves[s].items())) for s in sorted(moves)},
        to_conversion=dict(sorted(to_conversion.items())),
        to_null=dict(sorted(to_null.items())),
        absorption={s: Fraction(absorption[s]) for s in sorted(absorption)},
        conversion_probability=base,
        removal_effects=effects,
        path_count=sum(p.count for p in merged),
        distinct_paths=len(merged),
        conversions=sum(p.count for p in merged if p.converted),
        conversion_value=sum(p.value for p in merged),
        exact=exact,
    )


def markov_weights(
    journey_channels: Sequence[str], removal_effects: Mapping[str, Fraction]
) -> list[Fraction]:
    """Return per-touch weights: channels by removal effect, then evenly over their touches.

    Channels absent from the table weigh 0; if every channel of the journey weighs 0 the
    journey's distinct channels share equally. The weights are exact and sum to 1, ready
    for ``split_cents``.
    """
    return split_by_channel(journey_channels, dict(removal_effects))


def journey_state(fit: MarkovFit, journey_channels: Sequence[str]) -> State:
    """Return the fitted state a journey is in now (``START`` when none applies).

    Channels the fit never saw are skipped; if the journey's last-k tuple was never seen,
    its longest seen suffix is used (back-off), else ``START``.
    """
    known = [c for c in journey_channels if c in fit.removal_effects]
    visited = path_states(known, fit.order, collapse=fit.collapse)
    if not visited:
        return START
    current = visited[-1]
    for size in range(len(current), 0, -1):
        if current[-size:] in fit.absorption:
            return current[-size:]
    return START


def conversion_probability(fit: MarkovFit, journey_channels: Sequence[str]) -> float:
    """Return the probability that a journey now at its current state ends in conversion."""
    return float(fit.absorption.get(journey_state(fit, journey_channels), Fraction(0)))


def score_contributions(fit: MarkovFit, journey_channels: Sequence[str]) -> dict[str, float]:
    """Split the journey's conversion probability over its channels by removal effect.

    The same rule as the deal split (``markov_weights`` summed per channel), so the
    contributions add up to ``conversion_probability(fit, journey_channels)``.
    """
    if not journey_channels:
        return {}
    score = fit.absorption.get(journey_state(fit, journey_channels), Fraction(0))
    shares: dict[str, Fraction] = {}
    for channel, weight in zip(
        journey_channels, markov_weights(journey_channels, fit.removal_effects), strict=True
    ):
        shares[channel] = shares.get(channel, Fraction(0)) + weight
    return {channel: float(score * share) for channel, share in shares.items()}


def state_label(state: State) -> str:
    """Render a state as text: ``(start)`` or channels joined by `` > ``."""
    return " > ".join(state) if state else START_LABEL


def transition_rows(fit: MarkovFit) -> list[tuple[str, str, int, Fraction]]:
    """List (from, to, count, probability) for every observed transition, in state order."""
    rows: list[tuple[str, str, int, Fraction]] = []
    for state in sorted(fit.transitions, key=lambda s: (len(s), s)):
        targets = [(state_label(t), n) for t, n in fit.transitions[state].items()]
        targets += [
            (CONVERSION, fit.to_conversion.get(state, 0)),
            (NULL, fit.to_null.get(state, 0)),
        ]
        total = sum(n for _, n in targets)
        rows += [(state_label(state), t, n, Fraction(n, total)) for t, n in targets if n]
    return rows
