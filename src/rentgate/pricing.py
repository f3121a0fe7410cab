"""Quotes: the current price of an offering and the amount of an order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from rentgate.errors import Unprocessable
from rentgate.models import Price, utcnow
from rentgate.money import round_money, to_minor


@dataclass(frozen=True)
class Quote:
    """The price an order is sold at and its amount, rounded once."""

    offering: str
    unit: str
    unit_price: Decimal
    currency: str
    quantity: int
    billable_hours: int
    amount: Decimal

    @property
    def amount_minor(self) -> int:
        return to_minor(self.amount, self.currency)


def current_price(
    session: Session, offering: str, at: datetime | None = None
) -> Price | None:
    """Return the newest price of ``offering`` valid at ``at``."""
    moment = at or utcnow()
    return session.scalars(
        select(Price)
        .where(Price.offering == offering, Price.valid_from <= moment)
        .order_by(Price.valid_from.desc(), Price.id.desc())
        .limit(1)
    ).first()


def charge_amount(
    unit: str, unit_price: Decimal, quantity: int, hours: int, currency: str
) -> Decimal:
    """Compute quantity x unit price x billable hours, rounded half-even once."""
    if unit == "order":
        raw = unit_price
    elif unit == "unit":
        raw = unit_price * quantity
    elif unit == "unit_hour":
        raw = unit_price * quantity * hours
    else:
        raise ValueError(f"unknown price unit {unit!r}")
    return round_money(raw, currency)


def quote(session: Session, offering: str, quantity: int, hours: int) -> Quote:
    """Price an order, or raise 422 when the offering has no price."""
    price = current_price(session, offering)
    if price is None:
        raise Unprocessable(
            f"No price is configured for offering '{offering}', so it cannot be "
            "ordered; ask the operator to set a price.",
            extra={"offering": offering},
        )
    amount = charge_amount(
        price.unit, price.unit_price, quantity, hours, price.currency
    )
    return Quote(
        offering=offering,
        unit=price.unit,
        unit_price=price.unit_price,
        currency=price.currency,
        quantity=quantity,
        billable_hours=hours,
        amount=amount,
    )
