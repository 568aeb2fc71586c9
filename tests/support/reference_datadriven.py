"""An independent reference for the data-driven models (contract §4): Markov and Shapley.

Part of the test reference (tests/support/reference.py): standard library only, nothing
imported from ``services``, plain and slow on purpose. The input is a list of *paths*, one per
decided deal with a non-empty journey: ``(channels in journey order, converted)``.

Markov (first order, the chain of Anderl et al. 2016 as built by the
``marketing-attribution-models`` package):

- every path is start → c1 → … → cn → conversion (won) or null (lost), with consecutive
  repeats of a channel collapsed into one step (A, A, B is A, B);
- the transition probability s → t is the number of steps s → t over all steps out of s;
- P(conversion) is the probability of ending in conversion from start: the unknowns
  x_s = Σ_t P(s → t)·x_t + P(s → conversion), one per transient state, solved exactly in
  fractions by Gauss–Jordan elimination on the dense matrix;
- removing channel c sends every step into c to null, i.e. x_c = 0: the same system without
  c's row and column. Removal effect: 1 − P(conversion without c) / P(conversion), 0 for every
  channel when P(conversion) = 0.

Shapley (Zhao, Mahboobi, Bagheri 2018, arXiv:1804.05327): the players are the channels of all
paths; v(S) = the number of converted paths whose channel set lies within S; each value by the
textbook formula φ(c) = Σ over S ⊆ N∖{c} of |S|!·(n−|S|−1)!/n!·(v(S ∪ {c}) − v(S)).

Per deal (contract §4, README "Data-driven and custom models"): the deal's amount is split over
the channels of its journey in proportion to their weights (removal effects, Shapley values),
then evenly over each channel's touches; if every channel of the journey weighs 0 the channels
share equally. The per-touch weights are then rounded by largest remainder (reference.py).
"""

from __future__ import annotations

from fractions import Fraction
from math import factorial

PathIn = tuple[tuple[str, ...], bool]
START = "(start)"
MAX_SHAPLEY_PLAYERS = 16  # 2^16 coalitions per player: still a second or two


def collapse(channels: tuple[str, ...] | list[str]) -> list[str]:
    """Drop a channel that repeats the one just before it (A, A, B, A -> A, B, A)."""
    out: list[str] = []
    for channel in channels:
        if not out or out[-1] != channel:
            out.append(channel)
    return out


def _steps(
    paths: list[PathIn],
) -> tuple[dict[str, dict[str, int]], dict[str, int], dict[str, int]]:
    """Count steps between states, into conversion and into null."""
    moves: dict[str, dict[str, int]] = {}
    to_conversion: dict[str, int] = {}
    to_null: dict[str, int] = {}
    for channels, converted in paths:
        here = START
        for channel in collapse(channels):
            row = moves.setdefault(here, {})
            row[channel] = row.get(channel, 0) + 1
            here = channel
        ends = to_conversion if converted else to_null
        ends[here] = ends.get(here, 0) + 1
    return moves, to_conversion, to_null


def _solve(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """Solve matrix · x = rhs exactly (Gauss–Jordan with a non-zero pivot per column)."""
    n = len(rhs)
    rows = [[*matrix[i], rhs[i]] for i in range(n)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [v / lead for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][n] for i in range(n)]


def conversion_probability(paths: list[PathIn], removed: str | None = None) -> Fraction:
    """P(start ends in conversion), with channel ``removed`` (if any) sending to null."""
    moves, to_conversion, to_null = _steps(paths)
    states = sorted(
        {START, *moves, *(t for row in moves.values() for t in row), *to_conversion, *to_null}
        - {removed}
    )
    if START not in moves:
        return Fraction(0)
    index = {s: i for i, s in enumerate(states)}
    n = len(states)
    matrix = [[Fraction(int(i == j)) for j in range(n)] for i in range(n)]
    rhs = [Fraction(0)] * n
    for s in states:
        row = moves.get(s, {})
        total = sum(row.values()) + to_conversion.get(s, 0) + to_null.get(s, 0)
        for target, count in row.items():
            if target != removed:  # a step into the removed channel ends in null
                matrix[index[s]][index[target]] -= Fraction(count, total)
        rhs[index[s]] = Fraction(to_conversion.get(s, 0), total)
    return _solve(matrix, rhs)[index[START]]


def markov_removal_effects(paths: list[PathIn]) -> tuple[Fraction, dict[str, Fraction]]:
    """Return P(conversion) and every channel's removal effect."""
    channels = sorted({c for path, _ in paths for c in path})
    base = conversion_probability(paths)
    if base == 0:
        return base, dict.fromkeys(channels, Fraction(0))
    return base, {c: 1 - conversion_probability(paths, removed=c) / base for c in channels}


def shapley_values(paths: list[PathIn]) -> dict[str, Fraction]:
    """Return the Shapley value of every channel under v(S) = conversions within S."""
    players = sorted({c for path, _ in paths for c in path})
    n = len(players)
    if n > MAX_SHAPLEY_PLAYERS:
        raise ValueError(f"{n} channels: too many for the reference's 2^n enumeration")
    bit = {c: 1 << i for i, c in enumerate(players)}
    converted_sets: dict[int, int] = {}
    for path, converted in paths:
        if converted:
            mask = sum(bit[c] for c in set(path))
            converted_sets[mask] = converted_sets.get(mask, 0) + 1
    worth = [
        sum(count for members, count in converted_sets.items() if members & ~coalition == 0)
        for coalition in range(1 << n)
    ]
    size = [bin(coalition).count("1") for coalition in range(1 << n)]
    weight = [Fraction(factorial(k) * factorial(n - k - 1), factorial(n)) for k in range(n)]
    values: dict[str, Fraction] = {}
    for c in players:
        total = Fraction(0)
        for coalition in range(1 << n):
            if not coalition & bit[c]:
                gain = worth[coalition | bit[c]] - worth[coalition]
                if gain:
                    total += weight[size[coalition]] * gain
        values[c] = total
    return values


def channel_weights(channels: list[str], table: dict[str, Fraction]) -> list[Fraction]:
    """Per-touch weights of a journey: by channel weight, then evenly over a channel's touches."""
    touches: dict[str, int] = {}
    for channel in channels:
        touches[channel] = touches.get(channel, 0) + 1
    raw = {c: table.get(c, Fraction(0)) for c in touches}
    total = sum(raw.values(), Fraction(0))
    if total == 0:  # every channel weighs 0: the channels share equally
        raw, total = dict.fromkeys(touches, Fraction(1)), Fraction(len(touches))
    return [raw[c] / total / touches[c] for c in channels]
