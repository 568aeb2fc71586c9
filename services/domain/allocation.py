"""Exact splitting of an integer amount of minor currency units by fractional weights.

Invariants (largest-remainder method, all decisions exact):
- The credits sum to the amount exactly and are never negative.
- Each share is ``floor(amount * w_i)`` or that plus one unit (``w_i`` normalised).
- Leftover units go one each to the largest fractional parts, ties to the earlier index.
- A zero weight never receives a unit.

``split_cents`` takes exact weights. ``split_numerators`` is its core for weights already
given as integer numerators over their sum (no validation: the fast path of a recompute), and
``IntegerWeights`` keeps such weights with the splits of every small remainder, so splitting
a large amount by weights used again costs one multiplication per touch.
``split_certified`` decides the same split from floating-point approximations of the weights
with a proven error bound, and returns ``None`` whenever that bound leaves any floor or any
leftover unit in doubt, so its answer, when it gives one, is the exact one.
"""

from __future__ import annotations

import math
import struct
import sys
import threading
from array import array
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache
from operator import sub

_TABLE_LIMIT = 1_024  # largest total whose splits of every remainder IntegerWeights keeps
_ROW_BUDGET = 250_000  # remainder splits kept by all of them together (about 30 MB)
_ROWS_LOCK = threading.Lock()  # every thread of a process shares the budget
_ROWS_KEPT = [0]  # how many are kept (a pure cache: dropping rows changes no result)
PACKED_LIMIT = 2**64  # amounts below this split on packed 64-bit fields
_UNIT = 2.0**-53  # unit roundoff of a float
_EXACT_FLOAT_INT = 2**53  # every int below this is exactly a float


def split_cents(amount_minor: int, weights: Sequence[Fraction]) -> list[int]:
    """Split an integer amount over the weights so the parts sum to it exactly."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amount_minor must be an int, got {amount_minor!r}")
    if amount_minor < 0:
        raise ValueError(f"amount_minor must be >= 0, got {amount_minor}")
    if not weights:
        raise ValueError("cannot split an amount over no weights")
    exact = [Fraction(w) for w in weights]
    if any(w < 0 for w in exact):
        raise ValueError(f"weights must be >= 0, got {[str(w) for w in exact]}")
    # Integer arithmetic over a common denominator: the same exact split as Fractions, an
    # order of magnitude faster (no gcd per operation).
    denominator = math.lcm(*(w.denominator for w in exact))
    numerators = [w.numerator * (denominator // w.denominator) for w in exact]
    total = sum(numerators)
    if total == 0:
        raise ValueError("weights must not all be zero")
    return split_numerators(amount_minor, numerators, total)


def split_numerators(amount_minor: int, numerators: Sequence[int], total: int) -> list[int]:
    """Split ``amount_minor`` by weights ``numerators[i] / total`` (unchecked fast path).

    The caller guarantees ``amount_minor >= 0``, every numerator ``>= 0`` and
    ``total == sum(numerators) > 0``.
    """
    products = [amount_minor * n for n in numerators]
    credits = [p // total for p in products]
    leftover = amount_minor - sum(credits)
    if leftover:
        # The fractional part of share i is remainder_i / total. A reverse sort is stable,
        # so equal remainders keep index order: ties go to the earlier touch.
        remainders = [p % total for p in products]
        for index in sorted(range(len(credits)), key=remainders.__getitem__, reverse=True)[
            :leftover
        ]:
            credits[index] += 1
    return credits


def split_certified(
    amount_minor: int,
    raw: Sequence[float],
    *,
    rel_error: float,
    abs_error: float = 0.0,
    tie_keys: Sequence[object] | None = None,
    total: float | None = None,
) -> list[int] | None:
    """Return the exact split by weights ``w_i / sum(w)`` known only approximately, or None.

    ``raw[i]`` approximates a true weight ``w_i > 0`` with
    ``|raw[i] - w_i| <= rel_error * w_i + abs_error``; touches with equal ``tie_keys`` have
    exactly equal true weights (and equal ``raw``); ``total``, if given, is
    ``math.fsum(raw)``. The shares ``amount * w_i / sum(w)`` are computed in floats
    with a bound on their error; the split is returned only if every floor and the set of
    touches getting a leftover unit are the same for every set of weights within the bounds,
    so it is the split the true weights give. Otherwise (or for amounts of 2^53 and more)
    the caller must fall back to exact arithmetic.
    """
    count = len(raw)
    if not 0 <= amount_minor < _EXACT_FLOAT_INT or count == 0:
        return None
    if total is None:
        total = math.fsum(raw)
    if not total > 0.0:
        return None
    # Relative error of each share (first order, doubled for the higher-order terms): the
    # weight's, the sum's (weights' errors, abs_error terms, the rounding of fsum) and three
    # roundings (division, product; the float amount is exact).
    relative = 2.0 * (2.0 * rel_error + 5.0 * _UNIT + (count + 1) * abs_error / total)
    bound = amount_minor * relative + 1e-300
    shares = list(map((amount_minor / total).__mul__, raw))
    credits = list(map(math.floor, shares))
    fractions = list(map(sub, shares, credits))  # exact in floats
    # A share within the bound of an integer has an uncertain floor. A true share is > 0,
    # so a share below the bound with floor 0 is still certainly floored to 0.
    if max(fractions) >= 1.0 - bound:
        return None
    if min(fractions) <= bound and any(
        f <= bound and c for f, c in zip(fractions, credits, strict=True)
    ):
        return None
    leftover = amount_minor - sum(credits)
    if leftover:
        order = sorted(range(count), key=fractions.__getitem__, reverse=True)
        last_in, first_out = fractions[order[leftover - 1]], fractions[order[leftover]]
        if last_in - first_out <= 2.0 * bound:
            # Only exact ties may be this close: the touches near the cut must all carry
            # equal true weights (and so equal floats, which the stable sort keeps in index
            # order).
            low, high = first_out - 2.0 * bound, last_in + 2.0 * bound
            near = {tie_keys[i] for i in order if low <= fractions[i] <= high} if tie_keys else ()
            if len(near) != 1:
                return None
        for index in order[:leftover]:
            credits[index] += 1
    return credits


def pack(values: Sequence[int]) -> int:
    """Pack integers in ``[0, 2**64)`` into one: value ``i`` in bits ``[64 i, 64 i + 64)``."""
    return int.from_bytes(array("Q", values).tobytes(), sys.byteorder)


def unpack(packed: int, count: int) -> list[int]:
    """Unpack ``count`` integers packed by ``pack`` (or sums of such packings without carry)."""
    return list(_unpacker(count)(packed.to_bytes(8 * count, "little")))


@lru_cache(maxsize=256)
def _unpacker(count: int) -> Callable[[bytes], tuple[int, ...]]:
    return struct.Struct(f"<{count}Q").unpack


def forget_rows() -> None:
    """Reset the budget of kept remainder splits (after their tables have been dropped)."""
    with _ROWS_LOCK:
        _ROWS_KEPT[0] = 0


class IntegerWeights:
    """Exact weights ``numerators[i] / total`` (``total`` their sum > 0), ready to split by.

    Splitting an amount ``A = q * total + r`` gives ``q * numerators[i]`` plus the split of
    ``r`` (the remainders ``A * n_i mod total``, hence the leftover units, depend only on
    ``r``), so the split of each ``r < total`` is computed once and kept. Each credit is at
    most ``A``, so for ``A < 2**64`` the whole split is one integer operation on packed
    64-bit fields (``pack``): ``q * pack(numerators) + pack(split of r)``, with no carry
    between fields, and one unpacking.
    """

    __slots__ = (
        "numerators",
        "total",
        "floats",
        "packed",
        "rows",
        "simple",
        "nbytes",
        "unpacker",
        "_fractions",
        "_one",
        "_magic",
        "_low",
        "_ones",
    )

    def __init__(self, numerators: tuple[int, ...], total: int) -> None:
        self.numerators = numerators
        self.total = total
        self.floats = tuple(n / total for n in numerators)
        # q * n_i <= A < 2**64 for every field, so the product never carries even if some
        # numerator is 2**64 or more (and then does not fit a field of its own).
        self.packed = sum(n << (64 * i) for i, n in enumerate(numerators))
        self.nbytes = 8 * len(numerators)  # a packed split as little-endian bytes, and
        self.unpacker = _unpacker(len(numerators))  # their reading as integers
        self._fractions: tuple[Fraction, ...] | None = None
        # All weight on one touch, or equal weights (leftover units to the first touches, as
        # every fractional part ties): a split is two list operations, no table.
        self._one = numerators.index(total) if total in numerators else -1
        self.simple = self._one >= 0 or len(set(numerators)) == 1
        # rows[r]: the packed split of r, filled by ``row`` (a table only for small totals).
        self.rows: list[int | None] | None = [None] * total if total <= _TABLE_LIMIT else None
        # For ``_packed_row``, with total <= 2**10: floor(x / total) = floor(x * magic / 2**32)
        # for x < 2**20, as x * magic / 2**32 exceeds x / total by less than x / 2**32 <
        # 2**-12 < 1 / total, too little to cross an integer; x * magic < 2**53 fits a field.
        # low masks each field's low 32 bits; ones sums the fields.
        self._magic = -(-(2**32) // total)
        self._low = sum((2**32 - 1) << (64 * i) for i in range(len(numerators)))
        self._ones = sum(1 << (64 * i) for i in range(len(numerators)))

    def fractions(self) -> tuple[Fraction, ...]:
        """Return the normalised weights as exact fractions."""
        if self._fractions is None:
            self._fractions = tuple(Fraction(n, self.total) for n in self.numerators)
        return self._fractions

    def row(self, rest: int) -> int:
        """Return the packed split of ``0 <= rest < total`` (kept in ``rows`` if small)."""
        rows = self.rows
        if rows is None:
            return pack(split_numerators(rest, self.numerators, self.total))
        row = rows[rest]
        if row is None:
            row = self._packed_row(rest)
            with _ROWS_LOCK:  # the budget bounds the memory all tables take together
                if _ROWS_KEPT[0] < _ROW_BUDGET:
                    _ROWS_KEPT[0] += 1
                    rows[rest] = row
        return row

    def _packed_row(self, rest: int) -> int:
        """``pack(split_numerators(rest, ...))`` for a small total, field-wise on packed ints."""
        count = len(self.numerators)
        products = rest * self.packed  # rest * n_i < total**2 <= 2**20 in every field
        floors = ((products * self._magic) >> 32) & self._low  # floor(rest * n_i / total)
        # Field count-1 of floors * ones is the sum of all fields (< 2**64: no carry).
        leftover = rest - (((floors * self._ones) >> (64 * (count - 1))) & (2**64 - 1))
        if leftover:
            packed_remainders = products - floors * self.total  # rest * n_i mod total
            remainders = self.unpacker(packed_remainders.to_bytes(self.nbytes, "little"))
            # A stable reverse sort: equal remainders keep index order (ties to the earlier).
            for index in sorted(range(count), key=remainders.__getitem__, reverse=True)[:leftover]:
                floors += 1 << (64 * index)
        return floors

    def packed_split(self, amount_minor: int) -> int:
        """Return the split of ``0 <= amount_minor < 2**64``, packed (see ``pack``)."""
        whole, rest = divmod(amount_minor, self.total)
        return whole * self.packed + self.row(rest)

    def split(self, amount_minor: int) -> list[int]:
        """Split a non-negative integer amount exactly by these weights (as ``split_cents``)."""
        count = len(self.numerators)
        if self._one >= 0:
            credits = [0] * count
            credits[self._one] = amount_minor
            return credits
        if self.simple:
            whole, rest = divmod(amount_minor, count)
            return [whole + 1] * rest + [whole] * (count - rest)
        if amount_minor >= PACKED_LIMIT:
            return split_numerators(amount_minor, self.numerators, self.total)
        return unpack(self.packed_split(amount_minor), count)
