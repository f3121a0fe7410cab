"""Calendar months as ``YYYY-MM`` strings, and month arithmetic in SQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement

from rentgate.models import utcnow

# Years 2000 to 2999 only: month arithmetic and timestamps stay in range, and
# a typo such as 0000-01 is rejected instead of reaching the database.
MONTH_PATTERN = r"^2[0-9]{3}-(0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)


def is_month(text: str) -> bool:
    """Tell whether ``text`` is a month such as ``2026-12``."""
    return bool(_MONTH.match(text))


def month_number(month: str) -> int:
    """Return the months since year 0 of ``month``, so months subtract."""
    year, number = month.split("-")
    return int(year) * 12 + int(number) - 1


def month_from_number(number: int) -> str:
    """Invert ``month_number``."""
    year, index = divmod(number, 12)
    return f"{year:04d}-{index + 1:02d}"


def add_months(month: str, count: int) -> str:
    """Return the month ``count`` months after ``month`` (before, if negative)."""
    return month_from_number(month_number(month) + count)


def months_between(first: str, last: str) -> list[str]:
    """Return every month from ``first`` to ``last``, both included."""
    return [
        month_from_number(number)
        for number in range(month_number(first), month_number(last) + 1)
    ]


def month_start(month: str) -> datetime:
    """Return the first instant of ``month`` in UTC."""
    year, number = month.split("-")
    return datetime(int(year), int(number), 1, tzinfo=UTC)


def current_month() -> str:
    """Return this month in UTC."""
    return utcnow().strftime("%Y-%m")


def month_of(column: Any, dialect: str) -> ColumnElement[Any]:
    """Return a SQL expression for the UTC month of a timestamp column.

    SQLite stores timestamps as UTC text, which ``strftime`` reads. PostgreSQL
    truncates in UTC, whatever the session time zone; ``month_label`` turns
    the truncated timestamp into ``YYYY-MM``.
    """
    if dialect == "postgresql":
        return func.date_trunc("month", func.timezone("UTC", column))
    return func.strftime("%Y-%m", column)


def month_label(value: Any) -> str:
    """Turn a value of a ``month_of`` expression into ``YYYY-MM``."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m")
    return str(value)
