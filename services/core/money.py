"""Money as integers of minor units: ISO 4217 exponents, parsing and formatting.

Invariant: no float ever touches an amount. Amounts enter as decimal strings and are stored as
``int`` minor units (the currency's ISO 4217 exponent). Conversion between currencies is domain
logic (``services.domain.state.convert``: ``Decimal``, half-up to the target's minor unit).
"""

from __future__ import annotations

from decimal import Context, Decimal

# ISO 4217 active codes whose minor-unit exponent is not 2.
_EXPONENT_EXCEPTIONS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
# ISO 4217 active codes with exponent 2 (funds and precious metals without minor units left out).
_TWO_DIGIT = [
    "AED",
    "AFN",
    "ALL",
    "AMD",
    "ANG",
    "AOA",
    "ARS",
    "AUD",
    "AWG",
    "AZN",
    "BAM",
    "BBD",
    "BDT",
    "BGN",
    "BMD",
    "BND",
    "BOB",
    "BOV",
    "BRL",
    "BSD",
    "BTN",
    "BWP",
    "BYN",
    "BZD",
    "CAD",
    "CDF",
    "CHE",
    "CHF",
    "CHW",
    "CNY",
    "COP",
    "COU",
    "CRC",
    "CUP",
    "CVE",
    "CZK",
    "DKK",
    "DOP",
    "DZD",
    "EGP",
    "ERN",
    "ETB",
    "EUR",
    "FJD",
    "FKP",
    "GBP",
    "GEL",
    "GHS",
    "GIP",
    "GMD",
    "GTQ",
    "GYD",
    "HKD",
    "HNL",
    "HTG",
    "HUF",
    "IDR",
    "ILS",
    "INR",
    "IRR",
    "JMD",
    "KES",
    "KGS",
    "KHR",
    "KPW",
    "KYD",
    "KZT",
    "LAK",
    "LBP",
    "LKR",
    "LRD",
    "LSL",
    "MAD",
    "MDL",
    "MGA",
    "MKD",
    "MMK",
    "MNT",
    "MOP",
    "MRU",
    "MUR",
    "MVR",
    "MWK",
    "MXN",
    "MXV",
    "MYR",
    "MZN",
    "NAD",
    "NGN",
    "NIO",
    "NOK",
    "NPR",
    "NZD",
    "PAB",
    "PEN",
    "PGK",
    "PHP",
    "PKR",
    "PLN",
    "QAR",
    "RON",
    "RSD",
    "RUB",
    "SAR",
    "SBD",
    "SCR",
    "SDG",
    "SEK",
    "SGD",
    "SHP",
    "SLE",
    "SOS",
    "SRD",
    "SSP",
    "STN",
    "SVC",
    "SYP",
    "SZL",
    "THB",
    "TJS",
    "TMT",
    "TOP",
    "TRY",
    "TTD",
    "TWD",
    "TZS",
    "UAH",
    "USD",
    "USN",
    "UYU",
    "UZS",
    "VED",
    "VES",
    "WST",
    "XCD",
    "XCG",
    "YER",
    "ZAR",
    "ZMW",
    "ZWG",
]
CURRENCY_EXPONENTS: dict[str, int] = {**dict.fromkeys(_TWO_DIGIT, 2), **_EXPONENT_EXCEPTIONS}


_EXACT = Context(prec=60, Emax=100, Emin=-100)  # wider than any amount a string may carry


class MoneyError(ValueError):
    """An amount or currency that breaks the money rules (the message says which)."""


def exponent(currency: str) -> int:
    """Return the ISO 4217 minor-unit exponent of ``currency``."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unknown ISO 4217 currency code {currency!r}") from None


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
