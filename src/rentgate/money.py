"""Decimal money helpers: minor units, rounding and formatting.

Amounts are stored as integers in the currency's minor unit (cents for USD) so
that SQL sums are exact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

# ISO 4217 exponents of the currencies a price may use.
MINOR_UNIT_EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "JPY": 0}
CURRENCIES = tuple(MINOR_UNIT_EXPONENTS)

# The largest amount one ledger entry may carry, in minor units; it keeps sums
# of many entries far inside a signed 64-bit column.
MAX_AMOUNT_MINOR = 10**15


def exponent(currency: str) -> int:
    """Return the number of decimal places of ``currency``."""
    try:
        return MINOR_UNIT_EXPONENTS[currency]
    except KeyError:
        raise ValueError(
            f"unsupported currency {currency!r}; use one of {', '.join(CURRENCIES)}"
        ) from None


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` once, half-even, to the currency's minor unit."""
    return amount.quantize(Decimal(1).scaleb(-exponent(currency)), ROUND_HALF_EVEN)


def to_minor(amount: Decimal, currency: str) -> int:
    """Convert a rounded amount to integer minor units."""
    rounded = round_money(amount, currency)
    if rounded != amount:
        raise ValueError(f"{amount} has more decimals than {currency} allows")
    return int(rounded.scaleb(exponent(currency)))


def from_minor(minor: int, currency: str) -> Decimal:
    """Convert integer minor units back to a Decimal amount."""
    return round_money(Decimal(minor).scaleb(-exponent(currency)), currency)


def format_money(minor: int, currency: str) -> str:
    """Render minor units as a plain decimal string, such as ``"12.50"``."""
    return str(from_minor(minor, currency))


def format_decimal(value: Decimal, min_places: int = 2) -> str:
    """Render a Decimal in plain notation with at least ``min_places`` decimals."""
    places = max(min_places, -value.normalize().as_tuple().exponent)  # type: ignore[operator]
    return f"{value:.{places}f}"
