"""Helpers shared by the accounting services: field errors and money input."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rentgate.errors import Unprocessable
from rentgate.money import exponent, format_money, to_minor


def field_error(field: str, message: str, fix: str, **extra: Any) -> Unprocessable:
    """Build a 422 whose detail and field list name ``field``."""
    return Unprocessable(
        f"Field '{field}' is invalid: {message}; {fix}.",
        errors=[{"field": field, "message": message, "type": "value_error"}],
        extra=extra,
    )


def parse_minor(text: str, currency: str, field: str) -> int:
    """Convert a validated decimal string to minor units of ``currency``."""
    places = exponent(currency)
    try:
        return to_minor(Decimal(text), currency)
    except ValueError:
        raise field_error(
            field,
            f"{text} has more than {places} decimal places, which {currency} allows",
            f"round it to {places} places",
        ) from None


def money(minor: int, currency: str) -> str:
    """Render minor units as the API shows money, such as ``"12.50"``."""
    return format_money(minor, currency)


def iso(value: Any) -> str | None:
    """Render a timestamp as ISO 8601, or None."""
    return value.isoformat() if value is not None else None
