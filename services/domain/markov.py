"""Markov-chain attribution: removal effects of an absorbing chain, solved analytically.

The chain (Anderl et al. 2016, "Mapping the customer journey"; the construction of the
``marketing-attribution-models`` package, ``mam.models.markov``, and of ChannelAttribution):

- Every path is ``start -> s1 -> ... -> sn -> (conversion | null)``, weighted by its
  ``count``. Transition probabilities are counts divided by the row total.
- Consecutive repeats of a channel are one step (A,A,B is A,B): ``collapse=True``, the
  default. This is what the package does (its default ``transition_to_same_state=False``
  drops every ``c -> c`` pair, which is the same as collapsing runs). At order 1 keeping
  repeats (``collapse=False``) only adds self-loops, which change no absorption
  probability, so the removal effects are the same either way.
- Order k >= 1: a state is the tuple of the last ``min(t, k)`` steps after the t-th step,
  so a path of n steps visits ``(s1), (s1,s2), ..., (s_{n-k+1}..s_n)``; order-1 states are
  1-tuples and ``start`` is the empty tuple. At k > 1, ``collapse=False`` keeps repeats
  inside the k-tuples (ChannelAttribution's order-k states, e.g. ``(A, A)``); its chain
  goes from start straight to the first k-tuple, which gives the same absorption
  probabilities as passing through the prefixes.
- P(conversion) is the absorption probability into ``conversion`` from ``start``, from
  the linear system ``T_i x_i - sum_j n_ij x_j = n_i,conv`` (i.e. ``(I - Q) x = R``).
- Removing channel c deletes every state that contains c and sends the transitions into
  those states to ``null`` (the package moves the column into ``null``; same thing). The
  removal effect is ``1 - P(conv without c) / P(conv)``, 0 for every channel when
  P(conv) = 0; it always lies in [0, 1]. The removal effects are *not* normalised (the
  package's ``removal_effect`` table, not its normalised attribution weights).
- Paths' ``value`` does not enter the chain (``mam`` never uses it there; ChannelAttribution
  only reports value-weighted removal effects as an extra output).

Exactness: with at most ``exact_state_limit`` transient states (every order-1 chain of up
to 31 channels) the system is solved by Gaussian elimination in ``Fraction``: the numbers
are exact, ``MarkovFit.exact`` is True and ``max_error`` 0. Larger (higher-order) chains
are solved in float64 by Gauss-Seidel sweeps from below (0) and above (1) at once; since
``x -> Qx + R`` is monotone the two sweeps bracket the solution, and they stop when every
absorption probability is known to within ``tolerance`` (default 1e-13; ``max_error``
records the bound reached). Either way the same paths always give the same numbers:
counts are order-independent sums and states are processed in sorted order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeAlias

from .paths import Path, PathKey, collapse_repeats, split_by_channel, tally_paths

State: TypeAlias = tuple[str, ...]
START: State = ()
CONVERSION = "(conversion)"
NULL = "(null)"
START_LABEL = "(start)"
DEFAULT_EXACT_STATE_LIMIT = 32  # exact time grows ~n^4: 13 states 0.1 s, 64 states 30 s
DEFAULT_TOLERANCE = 1e-13
_MAX_SWEEPS = 1_000_000


@dataclass(frozen=True)
class MarkovFit:
    """A fitted absorbing chain: counts, absorption probabilities and removal effects.

    ``transitions`` / ``to_conversion`` / ``to_null`` are the weighted transition counts out
    of each transient state; ``absorption[s]`` is P(conversion | now at s) for every state
    (``absorption[START] == conversion_probability``); ``max_error`` bounds the absolute
    error of every absorption probability (0 when ``exact``).
    """

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
    max_error: float


def path_states(channels: Sequence[str], order: int = 1, *, collapse: bool = True) -> list[State]:
    """Return the chain states a channel sequence visits after ``start``."""
    _check_order(order)
    steps = collapse_repeats(channels) if collapse else tuple(channels)
    return [steps[max(0, t - order) : t] for t in range(1, len(steps) + 1)]


def _check_order(order: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")


def _count(
    tally: Mapping[PathKey, tuple[int, int]], order: int, collapse: bool
) -> tuple[dict[State, dict[State, int]], dict[State, int], dict[State, int]]:
    moves: dict[State, dict[State, int]] = {START: {}}
    to_conversion: dict[State, int] = {}
    to_null: dict[State, int] = {}
    known: dict[State, State] = {}  # one object per state: dict look-ups match by identity
    for (channels, converted), (count, _value) in tally.items():
        steps = collapse_repeats(channels) if collapse else channels
        previous = START
        for t in range(1, len(steps) + 1):
            state = steps[t - order if t > order else 0 : t]
            state = known.setdefault(state, state)
            row = moves[previous]
            row[state] = row.get(state, 0) + count
            if state not in moves:
                moves[state] = {}
            previous = state
        ends = to_conversion if converted else to_null
        ends[previous] = ends.get(previous, 0) + count
    return moves, to_conversion, to_null


@dataclass(frozen=True)
class _Chain:
    """Counts in solver form: rows of (target, count) among transient states."""

    moves: Mapping[State, Mapping[State, int]]
    to_conversion: Mapping[State, int]
    totals: Mapping[State, int]


def _solve_exact(chain: _Chain, states: Sequence[State]) -> dict[State, Fraction]:
    """Solve ``x_i = sum_j p_ij x_j + p_i,conv`` over ``states`` exactly (others are 0).

    Gaussian elimination in the given order on sparse rows; no pivoting is needed since
    every row of ``I - Q`` is diagonally dominant and every state reaches absorption.
    """
    keep = set(states)
    rows: dict[State, dict[State, Fraction]] = {}
    rhs: dict[State, Fraction] = {}
    for i in states:
        total = chain.totals[i]
        row = {i: Fraction(1)}
        for j, n in chain.moves[i].items():
            if j in keep:
                row[j] = row.get(j, Fraction(0)) - Fraction(n, total)
        rows[i] = row
        rhs[i] = Fraction(chain.to_conversion.get(i, 0), total)
    for k, pivot in enumerate(states):
        prow = rows[pivot]
        diag = prow.pop(pivot)
        for col in prow:
            prow[col] /= diag
        rhs[pivot] /= diag
        for other in states[k + 1 :]:
            orow = rows[other]
            factor = orow.pop(pivot, None)
            if factor:
                for col, coef in prow.items():
                    orow[col] = orow.get(col, Fraction(0)) - factor * coef
                rhs[other] -= factor * rhs[pivot]
    solution: dict[State, Fraction] = {}
    for pivot in reversed(states):
        # After elimination a row only refers to states eliminated after it.
        solution[pivot] = rhs[pivot] - sum(
            (coef * solution[col] for col, coef in rows[pivot].items()), Fraction(0)
        )
    return solution


def _solve_bracketed(
    chain: _Chain, states: Sequence[State], tolerance: float
) -> tuple[dict[State, float], float]:
    """Bracket the same solution from below (start 0) and above (start 1) by Gauss-Seidel.

    The map x -> Qx + R is monotone with the solution as its fixed point, so the lower
    sweeps rise and the upper sweeps fall towards it; the returned midpoint is within
    the returned half-gap of the true value (up to float rounding).
    """
    index = {s: k for k, s in enumerate(states)}
    hopeless = _cannot_convert(chain, index)
    succ = [
        [(index[j], n / chain.totals[i]) for j, n in chain.moves[i].items() if j in index]
        for i in states
    ]
    rhs = [chain.to_conversion.get(i, 0) / chain.totals[i] for i in states]
    # States that cannot reach conversion are exactly 0 (not merely bracketed near it).
    low, high = [0.0] * len(states), [0.0 if s in hopeless else 1.0 for s in states]
    for k, state in enumerate(states):
        if state in hopeless:
            succ[k], rhs[k] = [], 0.0
    gap = 1.0
    for _sweep in range(_MAX_SWEEPS):
        gap = 0.0
        for k, row in enumerate(succ):
            lo = hi = rhs[k]
            for j, q in row:
                lo += q * low[j]
                hi += q * high[j]
            low[k], high[k] = lo, hi
            gap = max(gap, hi - lo)
        if gap <= 2 * tolerance:
            break
    return {s: (low[k] + high[k]) / 2 for s, k in index.items()}, gap / 2


def _cannot_convert(chain: _Chain, index: Mapping[State, int]) -> set[State]:
    """Return the states (among ``index``) with no path to conversion inside ``index``."""
    preds: dict[State, list[State]] = {}
    for i in index:
        for j in chain.moves[i]:
            if j in index:
                preds.setdefault(j, []).append(i)
    reach = {s for s in index if chain.to_conversion.get(s, 0)}
    frontier = list(reach)
    while frontier:
        for i in preds.get(frontier.pop(), []):
            if i not in reach:
                reach.add(i)
                frontier.append(i)
    return set(index) - reach


def _elimination_order(states: Iterable[State]) -> list[State]:
    # Longest tuples first: shorter (prefix) states only feed longer ones, so eliminating
    # the long block first keeps the rows of prefix states from filling in.
    return sorted(states, key=lambda s: (-len(s), s))


def _absorption(
    chain: _Chain, states: Sequence[State], *, exact: bool, tolerance: float
) -> tuple[dict[State, Fraction], float]:
    if exact:
        return _solve_exact(chain, states), 0.0
    approx, error = _solve_bracketed(chain, states, tolerance)
    return {s: Fraction(x) for s, x in approx.items()}, error


def fit_markov(
    paths: Iterable[Path],
    *,
    order: int = 1,
    collapse: bool = True,
    exact_state_limit: int = DEFAULT_EXACT_STATE_LIMIT,
    tolerance: float = DEFAULT_TOLERANCE,
) -> MarkovFit:
    """Fit an order-k absorbing Markov chain on the paths and compute removal effects."""
    _check_order(order)
    tally = tally_paths(paths)
    moves, to_conversion, to_null = _count(tally, order, collapse)
    states = _elimination_order(moves)
    exact = len(states) <= exact_state_limit
    totals = {
        s: sum(moves[s].values()) + to_conversion.get(s, 0) + to_null.get(s, 0) for s in states
    }
    chain = _Chain(moves=moves, to_conversion=to_conversion, totals=totals)
    channels = tuple(sorted({c for s in states for c in s}))
    absorption, error = (
        _absorption(chain, states, exact=exact, tolerance=tolerance)
        if tally
        else ({START: Fraction(0)}, 0.0)
    )
    base = absorption[START]
    effects: dict[str, Fraction] = {}
    for channel in channels:
        if base == 0:
            effects[channel] = Fraction(0)
            continue
        kept = [s for s in states if channel not in s]
        without, removed_error = _absorption(chain, kept, exact=exact, tolerance=tolerance)
        error = max(error, removed_error)
        effects[channel] = min(max(1 - without[START] / base, Fraction(0)), Fraction(1))
    return MarkovFit(
        order=order,
        collapse=collapse,
        channels=channels,
        states=tuple(sorted(states, key=lambda s: (len(s), s))),
        transitions={s: dict(sorted(moves[s].items())) for s in sorted(moves)},
        to_conversion=dict(sorted(to_conversion.items())),
        to_null=dict(sorted(to_null.items())),
        absorption={s: absorption[s] for s in sorted(absorption)},
        conversion_probability=base,
        removal_effects=effects,
        path_count=sum(count for count, _ in tally.values()),
        distinct_paths=len(tally),
        conversions=sum(count for (_, converted), (count, _) in tally.items() if converted),
        conversion_value=sum(value for _, value in tally.values()),
        exact=exact,
        max_error=error,
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
