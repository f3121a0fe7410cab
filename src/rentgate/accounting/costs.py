"""Costs: entering them and spreading them over calendar months.

Amounts that do not divide evenly are spread by rounding the running total.
Month i gets round(A * i / n) - round(A * (i - 1) / n), rounded half-even, so
every month is within one minor unit of A / n. The 12 months of each year of
a yearly cost, and all months of an amortisation, add up to A exactly.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rentgate.accounting.common import field_error, iso, money, parse_minor
from rentgate.accounting.months import month_from_number, month_number
from rentgate.accounting.schemas import CostCreate
from rentgate.errors import NotFound
from rentgate.models import Cost, Lease

log = logging.getLogger(__name__)

CAPEX_VIEWS = ("amortised", "expensed")
COST_KIND_ORDER = ("capex", "opex", "labour", "provider")


def rounded_ratio(numerator: int, denominator: int) -> int:
    """Divide integers, rounding half to even."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def spread_share(total: int, parts: int, index: int) -> int:
    """Return part ``index`` (from 0) of ``total`` spread over ``parts`` parts."""
    upper = rounded_ratio(total * (index + 1), parts)
    lower = rounded_ratio(total * index, parts)
    return upper - lower


def cost_to_dict(cost: Cost) -> dict[str, Any]:
    """Render a cost for the API."""
    per = None
    if cost.period_months is not None:
        per = "year" if cost.period_months == 12 else "month"
    return {
        "id": cost.id,
        "kind": cost.kind,
        "amount": money(cost.amount_minor, cost.currency),
        "currency": cost.currency,
        "start_month": cost.start_month,
        "end_month": cost.end_month,
        "amortisation_months": cost.amortisation_months,
        "per": per,
        "lease_id": cost.lease_id,
        "note": cost.note,
        "created_at": iso(cost.created_at),
    }


def _reject(field: str, kind: str, fix: str) -> None:
    raise field_error(field, f"does not apply to kind '{kind}'", fix)


def add_cost(session: Session, body: CostCreate) -> Cost:
    """Insert a cost after checking the fields its kind needs."""
    kind = body.kind
    if kind == "capex" and body.amortisation_months is None:
        raise field_error(
            "amortisation_months",
            "missing for kind 'capex'",
            "give the number of months to spread the expenditure over, such as 60",
        )
    if kind != "capex" and body.amortisation_months is not None:
        _reject("amortisation_months", kind, "send it only with kind 'capex'")
    if kind not in ("opex", "labour"):
        if body.per is not None:
            _reject("per", kind, "send it only with kind 'opex' or 'labour'")
        if body.end_month is not None:
            _reject("end_month", kind, "send it only with kind 'opex' or 'labour'")
    if kind == "provider" and body.lease_id is None:
        raise field_error(
            "lease_id", "missing for kind 'provider'", "give the lease this cost is for"
        )
    if kind != "provider" and body.lease_id is not None:
        _reject("lease_id", kind, "send it only with kind 'provider'")

    start = body.start_month
    if kind == "provider":
        lease = session.get(Lease, body.lease_id)
        if lease is None:
            raise NotFound(
                f"Lease '{body.lease_id}' not found; give the id of an existing lease."
            )
        if start is None:
            booked = lease.activated_at or lease.created_at
            start = booked.strftime("%Y-%m")
    if start is None:
        raise field_error(
            "start_month", f"missing for kind '{kind}'", "give a month such as 2026-01"
        )
    if body.end_month is not None and body.end_month < start:
        raise field_error(
            "end_month",
            f"{body.end_month} is before start_month {start}",
            "give a month on or after start_month",
        )

    cost = Cost(
        kind=kind,
        amount_minor=parse_minor(body.amount, body.currency, "amount"),
        currency=body.currency,
        start_month=start,
        end_month=body.end_month,
        amortisation_months=body.amortisation_months,
        period_months=(12 if body.per == "year" else 1)
        if kind in ("opex", "labour")
        else None,
        lease_id=body.lease_id,
        note=body.note,
    )
    session.add(cost)
    session.flush()
    log.info("cost added cost_id=%s kind=%s", cost.id, cost.kind)
    return cost


def list_costs(session: Session, kind: str | None = None) -> list[Cost]:
    """Return costs by start month and id, only one kind's when ``kind`` is given."""
    query = select(Cost).order_by(Cost.start_month, Cost.id)
    if kind is not None:
        query = query.where(Cost.kind == kind)
    return list(session.scalars(query).all())


def _spread(cost: Cost, first: int, last: int, capex: str) -> dict[int, int]:
    """Return the minor units ``cost`` puts in each month number of first..last."""
    start = month_number(cost.start_month)
    shares: dict[int, int] = {}
    if cost.kind == "capex":
        if capex == "expensed":
            if first <= start <= last:
                shares[start] = cost.amount_minor
            return shares
        parts = cost.amortisation_months or 1
        for number in range(max(first, start), min(last, start + parts - 1) + 1):
            shares[number] = spread_share(cost.amount_minor, parts, number - start)
        return shares

    end = month_number(cost.end_month) if cost.end_month else last
    period = cost.period_months or 1
    for number in range(max(first, start), min(last, end) + 1):
        shares[number] = spread_share(cost.amount_minor, period, (number - start) % 12)
    return shares


def monthly_costs(
    session: Session, first: str, last: str, currency: str, capex: str
) -> dict[str, dict[str, int]]:
    """Return minor units of cost by month and kind, for months first..last.

    Provider costs, one row per lease, are summed in SQL; the few recurring and
    capital rows are spread in Python.
    """
    low, high = month_number(first), month_number(last)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    recurring = session.scalars(
        select(Cost).where(
            Cost.kind != "provider",
            Cost.currency == currency,
            Cost.start_month <= last,
        )
    ).all()
    for cost in recurring:
        for number, share in _spread(cost, low, high, capex).items():
            totals[month_from_number(number)][cost.kind] += share

    provider = session.execute(
        select(Cost.start_month, func.sum(Cost.amount_minor))
        .where(
            Cost.kind == "provider",
            Cost.currency == currency,
            Cost.start_month >= first,
            Cost.start_month <= last,
        )
        .group_by(Cost.start_month)
    ).all()
    for month, amount in provider:
        totals[month]["provider"] += int(amount)
    return totals


def first_cost_month(session: Session, currency: str) -> str | None:
    """Return the earliest month any cost in ``currency`` starts."""
    return session.scalar(
        select(func.min(Cost.start_month)).where(Cost.currency == currency)
    )
