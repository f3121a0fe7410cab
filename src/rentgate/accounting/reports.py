"""Revenue, cost and profit reports by month, and the break-even month.

Revenue is summed from ledger_entries in SQL, grouped by month and offering
over the covering index on (currency, booked_at, offering, amount_minor).
The ledger is append-only and entries are booked at the current time, so the
sums of a month that has ended never change. They are stored in
revenue_months the first time a report needs them, and later reports read
them from there. Only the open months are summed from the ledger each time.
Every figure is in integer minor units of one currency until it is rendered.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from rentgate.accounting.common import field_error, money
from rentgate.accounting.costs import (
    COST_KIND_ORDER,
    first_cost_month,
    monthly_costs,
    rounded_ratio,
)
from rentgate.accounting.months import (
    add_months,
    current_month,
    month_label,
    month_number,
    month_of,
    month_start,
    months_between,
)
from rentgate.accounting.schemas import ReportQuery
from rentgate.models import ClosedRevenueMonth, LedgerEntry, RevenueMonth, utcnow

log = logging.getLogger(__name__)

# Reports longer than this are rejected, so a typo such as 1026-01 cannot
# make the server build a thousand-year table.
MAX_REPORT_MONTHS = 1200
# A month's sums are stored once it ended this long ago. Entries are booked
# with the current time, and a transaction that booked one just before
# midnight commits within seconds, so an hour leaves a wide margin.
CLOSE_MARGIN = timedelta(hours=1)
# The run rate is the average of the last months of a report, at most this many.
RUN_RATE_MONTHS = 12


@dataclass(frozen=True)
class Period:
    """The months a report covers, both included, and its currency."""

    first: str
    last: str
    currency: str

    @property
    def months(self) -> list[str]:
        return months_between(self.first, self.last)


def _month_bucket(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    # Literal arguments keep the SELECT and GROUP BY expressions identical;
    # PostgreSQL would treat two bound parameters as different expressions.
    if dialect == "postgresql":
        column = literal_column("'UTC'")
        expression = func.date_trunc(
            literal_column("'month'"), func.timezone(column, LedgerEntry.booked_at)
        )
        return expression.label("month")
    return month_of(LedgerEntry.booked_at, "sqlite").label("month")


def _in_period(period: Period) -> list[Any]:
    return [
        LedgerEntry.currency == period.currency,
        LedgerEntry.booked_at >= month_start(period.first),
        LedgerEntry.booked_at < month_start(add_months(period.last, 1)),
    ]


def first_ledger_month(session: Session, currency: str) -> str | None:
    """Return the month of the earliest ledger entry in ``currency``."""
    earliest: datetime | None = session.scalar(
        select(func.min(LedgerEntry.booked_at)).where(LedgerEntry.currency == currency)
    )
    return earliest.strftime("%Y-%m") if earliest else None


def report_period(session: Session, query: ReportQuery) -> Period:
    """Resolve a report's months: by default from the first entry or cost to now."""
    last = query.to_month or current_month()
    first = query.from_month
    if first is None:
        starts = [
            month
            for month in (
                first_ledger_month(session, query.currency),
                first_cost_month(session, query.currency),
            )
            if month is not None
        ]
        first = min([*starts, last])
    if first > last:
        raise field_error(
            "from", f"{first} is after to {last}", "give a from month on or before to"
        )
    if month_number(last) - month_number(first) >= MAX_REPORT_MONTHS:
        raise field_error(
            "from",
            f"{first} to {last} spans more than {MAX_REPORT_MONTHS} months",
            "narrow the range",
        )
    return Period(first, last, query.currency)


def _live_revenue(session: Session, period: Period) -> list[tuple[str, str, int]]:
    """Sum the ledger by month and offering over ``period``, straight from SQL."""
    bucket = _month_bucket(session)
    rows = session.execute(
        select(bucket, LedgerEntry.offering, func.sum(LedgerEntry.amount_minor))
        .where(*_in_period(period))
        .group_by(bucket, LedgerEntry.offering)
    ).all()
    return [
        (month_label(month), offering, int(total)) for month, offering, total in rows
    ]


def last_closed_month(now: datetime | None = None) -> str:
    """Return the newest month that ended at least ``CLOSE_MARGIN`` ago."""
    moment = (now or utcnow()) - CLOSE_MARGIN
    return add_months(moment.strftime("%Y-%m"), -1)


def _closed_revenue(
    session: Session, currency: str, first: str, last: str
) -> list[tuple[str, str, int]]:
    """Return the sums of closed months first..last, storing any not stored yet."""
    closed = set(
        session.scalars(
            select(ClosedRevenueMonth.month).where(
                ClosedRevenueMonth.currency == currency,
                ClosedRevenueMonth.month >= first,
                ClosedRevenueMonth.month <= last,
            )
        )
    )
    stored = session.execute(
        select(
            RevenueMonth.month, RevenueMonth.offering, RevenueMonth.amount_minor
        ).where(
            RevenueMonth.currency == currency,
            RevenueMonth.month >= first,
            RevenueMonth.month <= last,
        )
    ).all()
    rows = [(m, offering, int(amount)) for m, offering, amount in stored if m in closed]
    missing = [month for month in months_between(first, last) if month not in closed]
    if not missing:
        return rows

    missing_set = set(missing)
    sums = _live_revenue(session, Period(missing[0], missing[-1], currency))
    computed = [row for row in sums if row[0] in missing_set]
    _store_closed(session, currency, missing, computed)
    return rows + computed


def _store_closed(
    session: Session,
    currency: str,
    months: list[str],
    sums: list[tuple[str, str, int]],
) -> None:
    # The caller's session may be read-only, and on SQLite its snapshot would
    # not see these rows anyway, so they are written through a session of their
    # own. ON CONFLICT DO NOTHING lets concurrent reports close the same month;
    # their sums are equal because the month is closed.
    bind = session.get_bind().execution_options(read_only=False)
    insert = pg_insert if bind.dialect.name == "postgresql" else sqlite_insert
    with Session(bind) as writer, writer.begin():
        if sums:
            values = [
                {
                    "currency": currency,
                    "month": month,
                    "offering": offering,
                    "amount_minor": amount,
                }
                for month, offering, amount in sums
            ]
            writer.execute(insert(RevenueMonth).values(values).on_conflict_do_nothing())
        marks = [
            {"currency": currency, "month": month, "closed_at": utcnow()}
            for month in months
        ]
        writer.execute(
            insert(ClosedRevenueMonth).values(marks).on_conflict_do_nothing()
        )
    log.info("revenue months stored currency=%s months=%s", currency, len(months))


def forget_closed_months(session: Session, currency: str, first: str, last: str) -> int:
    """Delete the stored sums of months first..last, so reports sum them again.

    Returns the number of months forgotten.
    """
    closed = (
        ClosedRevenueMonth.currency == currency,
        ClosedRevenueMonth.month >= first,
        ClosedRevenueMonth.month <= last,
    )
    count = session.scalar(select(func.count()).where(*closed)) or 0
    session.execute(
        delete(RevenueMonth).where(
            RevenueMonth.currency == currency,
            RevenueMonth.month >= first,
            RevenueMonth.month <= last,
        )
    )
    session.execute(delete(ClosedRevenueMonth).where(*closed))
    log.info("revenue months forgotten currency=%s months=%s", currency, count)
    return int(count)


def revenue_by_month_offering(
    session: Session, period: Period
) -> list[tuple[str, str, int]]:
    """Return (month, offering, minor units) for every group with entries.

    Closed months are read from ``revenue_months``, and summed from the ledger
    the first time a report covers them. The open months are summed live.
    """
    closed_last = min(period.last, last_closed_month())
    rows: list[tuple[str, str, int]] = []
    if period.first <= closed_last:
        rows += _closed_revenue(session, period.currency, period.first, closed_last)
    open_first = max(period.first, add_months(closed_last, 1))
    if open_first <= period.last:
        rows += _live_revenue(session, Period(open_first, period.last, period.currency))
    return sorted(rows)


def revenue_by_month(session: Session, period: Period) -> dict[str, int]:
    """Return minor units of revenue by month; months without entries are absent."""
    totals: dict[str, int] = defaultdict(int)
    for month, _, amount in revenue_by_month_offering(session, period):
        totals[month] += amount
    return dict(totals)


def revenue_report(session: Session, period: Period) -> dict[str, Any]:
    """Build the revenue report: by month and offering, by month, by offering."""
    rows = revenue_by_month_offering(session, period)
    by_month: dict[str, int] = defaultdict(int)
    by_offering: dict[str, int] = defaultdict(int)
    for month, offering, amount in rows:
        by_month[month] += amount
        by_offering[offering] += amount
    currency = period.currency
    return {
        "currency": currency,
        "from": period.first,
        "to": period.last,
        "rows": [
            {"month": month, "offering": offering, "amount": money(amount, currency)}
            for month, offering, amount in rows
        ],
        "by_month": [
            {"month": month, "amount": money(by_month[month], currency)}
            for month in period.months
        ],
        "by_offering": [
            {"offering": offering, "amount": money(amount, currency)}
            for offering, amount in sorted(by_offering.items())
        ],
        "total": money(sum(by_month.values()), currency),
    }


def cost_report(session: Session, period: Period, capex: str) -> dict[str, Any]:
    """Build the cost report: each month's cost by kind, and totals by kind."""
    costs = monthly_costs(session, period.first, period.last, period.currency, capex)
    currency = period.currency
    months = []
    by_kind: dict[str, int] = defaultdict(int)
    for month in period.months:
        row: dict[str, Any] = {"month": month}
        for kind in COST_KIND_ORDER:
            amount = costs.get(month, {}).get(kind, 0)
            by_kind[kind] += amount
            row[kind] = money(amount, currency)
        row["total"] = money(sum(costs.get(month, {}).values()), currency)
        months.append(row)
    return {
        "currency": currency,
        "from": period.first,
        "to": period.last,
        "capex": capex,
        "months": months,
        "by_kind": {kind: money(by_kind[kind], currency) for kind in COST_KIND_ORDER},
        "total": money(sum(by_kind.values()), currency),
    }


def profit_report(session: Session, period: Period, capex: str) -> dict[str, Any]:
    """Build the profit report: monthly and cumulative profit, years, break-even."""
    revenue = revenue_by_month(session, period)
    costs = monthly_costs(session, period.first, period.last, period.currency, capex)
    currency = period.currency

    months: list[dict[str, Any]] = []
    series: list[tuple[str, int, int, int]] = []
    cumulative = 0
    years: dict[str, list[int]] = {}
    for month in period.months:
        earned = revenue.get(month, 0)
        spent = sum(costs.get(month, {}).values())
        cumulative += earned - spent
        series.append((month, earned, spent, cumulative))
        year = years.setdefault(month[:4], [0, 0])
        year[0] += earned
        year[1] += spent
        months.append(
            {
                "month": month,
                "revenue": money(earned, currency),
                "costs": money(spent, currency),
                "profit": money(earned - spent, currency),
                "cumulative_profit": money(cumulative, currency),
            }
        )
    total_revenue = sum(item[1] for item in series)
    total_costs = sum(item[2] for item in series)
    return {
        "currency": currency,
        "from": period.first,
        "to": period.last,
        "capex": capex,
        "months": months,
        "years": [
            {
                "year": year,
                "revenue": money(earned, currency),
                "costs": money(spent, currency),
                "profit": money(earned - spent, currency),
            }
            for year, (earned, spent) in years.items()
        ],
        "totals": {
            "revenue": money(total_revenue, currency),
            "costs": money(total_costs, currency),
            "profit": money(total_revenue - total_costs, currency),
        },
        "break_even": break_even(series, currency),
    }


def break_even(
    series: list[tuple[str, int, int, int]], currency: str
) -> dict[str, Any]:
    """Find or project the month cumulative profit reaches zero and stays there.

    ``series`` contains (month, revenue, costs, cumulative profit) in month order.
    When the report ends below zero, the average of its last months is the run
    rate: a positive monthly profit projects the month the loss is recovered,
    and otherwise the business does not break even at that rate.
    """
    reached = None
    for month, _, _, cumulative in reversed(series):
        if cumulative < 0:
            break
        reached = month
    window = series[-RUN_RATE_MONTHS:]
    count = len(window)
    run_revenue = rounded_ratio(sum(item[1] for item in window), count)
    run_costs = rounded_ratio(sum(item[2] for item in window), count)
    run_profit = run_revenue - run_costs
    result: dict[str, Any] = {
        "status": "reached",
        "month": reached,
        "run_rate_months": count,
        "run_rate_revenue": money(run_revenue, currency),
        "run_rate_costs": money(run_costs, currency),
        "monthly_shortfall": money(max(0, -run_profit), currency),
    }
    if reached is not None:
        result["message"] = (
            f"Broke even in {reached}: cumulative profit is zero or more from then on."
        )
        return result

    deficit = -series[-1][3]
    if run_profit > 0:
        months_needed = -(-deficit // run_profit)
        projected = add_months(series[-1][0], months_needed)
        result["status"] = "projected"
        result["month"] = projected
        result["message"] = (
            f"Not broken even by {series[-1][0]}: the cumulative loss of "
            f"{money(deficit, currency)} {currency} is recovered in {projected} at "
            f"the run rate of {money(run_profit, currency)} {currency} profit a month."
        )
        return result

    result["status"] = "not_at_run_rate"
    if run_profit == 0:
        reason = "revenue only just covers costs"
    else:
        reason = (
            f"revenue falls short of costs by {money(-run_profit, currency)} "
            f"{currency} a month"
        )
    result["message"] = (
        "The business does not break even at the current run rate: "
        f"{reason}, so the cumulative loss of {money(deficit, currency)} "
        f"{currency} is never recovered."
    )
    return result
