"""Money as integers of minor units: parsing and formatting (exponents: ``domain.money``).

Invariant: no float ever touches an amount. Amounts enter as decimal strings and are stored as
``int`` minor units (the currency's ISO 4217 exponent). Conversion between currencies is domain
logic (``services.domain.state.convert``: ``Decimal``, half-up to the target's minor unit).
"""

from __future__ import annotations

from decimal import Context, Decimal

# The exponent table is pure domain data; it lives with the conversions that need it.
from services.domain.money import CURRENCY_EXPONENTS, MoneyError, exponent

__all__ = [
    "CURRENCY_EXPONENTS",
    "MoneyError",
    "check_currency",
    "exponent",
    "format_minor",
    "parse_decimal",
    "to_minor",
]

_EXACT = Context(prec=60, Emax=100, Emin=-100)  # wider than any amount a string may carry


def check_currency(currency: str) -> str:
    """Return ``currency`` if it is a known ISO 4217 code, else raise MoneyError."""
    exponent(currency)
    return currency


def parse_decimal(text: str) -> Decimal:
    """Parse a plain decimal string (``^[0-9]+(\\.[0-9]+)?$``, contract §1) into a Decimal.

    Only ASCII digits, one optional dot with digits on both sides: no sign, exponent, spaces,
    underscores or other scripts' digits (``Decimal`` alone would take ``"+5"``, ``".5"``,
    ``"1e3"`` and ``"١٠٠"``).
    """
    if not isinstance(text, str):
        raise MoneyError('must be a decimal string, e.g. "12500.00" (numbers are rejected)')
    if len(text) > 40:
        raise MoneyError("must be at most 40 characters long")
    whole, dot, fraction = text.partition(".")
    if not _ascii_digits(whole) or (dot and not _ascii_digits(fraction)):
        raise MoneyError(
            f"{text!r} is not a plain decimal string: ASCII digits with an optional dot and "
            'fraction, e.g. "12500.00" (no sign, exponent or spaces)'
        )
    return Decimal(text)


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def to_minor(amount: str, currency: str) -> int:
    """Convert a decimal string in ``currency`` into integer minor units, exactly."""
    exp = exponent(currency)
    value = parse_decimal(amount)
    digits_after_point = -min(0, int(value.as_tuple().exponent))
    # Trailing zeros beyond the exponent ("12.500" USD) are fine; other digits are not.
    if digits_after_point > exp and value != value.quantize(
        Decimal(1).scaleb(-exp), context=_EXACT
    ):
        raise MoneyError(f"{amount!r} has more decimal places than {currency} allows ({exp})")
    return int(value.scaleb(exp, context=_EXACT))


def format_minor(amount_minor: int, currency: str) -> str:
    """Format integer minor units as a decimal string with the currency's exponent."""
    exp = exponent(currency)
    value = Decimal(amount_minor).scaleb(-exp)
    return f"{value:.{exp}f}"
