"""Quotes: the current price of an offering and the amount of an order.

A price is either flat (``unit_price`` for every unit) or graduated: bands of
units, each at its own unit price, such as the first 100 units at 2.50 and
every further unit at 2.00. Either way the amount is rounded once, half-even,
at the currency's minor unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from rentgate.errors import Unprocessable
from rentgate.models import Price, PriceTier, utcnow
from rentgate.money import MAX_AMOUNT_MINOR, round_money, to_minor

# Scale of the unit_price columns; a blended unit price is rounded to it.
UNIT_PRICE_PLACES = Decimal("0.00000001")


@dataclass(frozen=True)
class Tier:
    """A band of a graduated price; ``up_to`` is None for the last, open band."""

    up_to: int | None
    unit_price: Decimal


@dataclass(frozen=True)
class Quote:
    """The price an order is sold at and its amount, rounded once."""

    price_id: int
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


def price_tiers(session: Session, price_id: int) -> list[Tier]:
    """Return the bands of a graduated price in order, or [] for a flat price."""
    rows = session.scalars(
        select(PriceTier).where(PriceTier.price_id == price_id)
    ).all()
    tiers = [Tier(row.up_to, row.unit_price) for row in rows]
    return sorted(tiers, key=lambda tier: (tier.up_to is None, tier.up_to or 0))


@dataclass(frozen=True)
class CurrentPrice:
    """A price row and its bands; rows are only inserted, never changed."""

    id: int
    unit: str
    unit_price: Decimal
    currency: str
    tiers: tuple[Tier, ...]


def fetch_price(bind: Session | Connection, offering: str) -> CurrentPrice | None:
    """Read the current price of ``offering`` and its bands in one query."""
    # Quoting is on every order's path, so this reads plain rows instead of
    # ORM objects.
    prices, bands = Price.__table__, PriceTier.__table__
    chosen = (
        select(prices.c.id)
        .where(prices.c.offering == offering, prices.c.valid_from <= utcnow())
        .order_by(prices.c.valid_from.desc(), prices.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = bind.execute(
        select(
            prices.c.id,
            prices.c.unit,
            prices.c.unit_price,
            prices.c.currency,
            bands.c.up_to,
            bands.c.unit_price.label("band_price"),
        )
        .select_from(prices.outerjoin(bands, bands.c.price_id == prices.c.id))
        .where(prices.c.id == chosen)
    ).all()
    if not rows:
        return None
    tiers = [
        Tier(row.up_to, row.band_price) for row in rows if row.band_price is not None
    ]
    tiers.sort(key=lambda tier: (tier.up_to is None, tier.up_to or 0))
    first = rows[0]
    return CurrentPrice(
        first.id, first.unit, first.unit_price, first.currency, tuple(tiers)
    )


class PriceCache:
    """The current price of each offering as this process last read it.

    A cached price may be stale: a newer price may have been set, or have
    become valid, since it was read. Only the PostgreSQL admission statement
    uses it. That statement checks in the same snapshot that the price is still
    the current one, and changes nothing otherwise, so the caller then calls
    ``forget`` and quotes afresh.
    """

    def __init__(self) -> None:
        self._prices: dict[str, CurrentPrice] = {}

    def get(self, bind: Session | Connection, offering: str) -> CurrentPrice | None:
        """Return the cached price of ``offering``, reading it on a miss."""
        price = self._prices.get(offering)
        if price is None:
            price = fetch_price(bind, offering)
            if price is not None:
                self._prices[offering] = price
        return price

    def forget(self, offering: str) -> None:
        """Drop the cached price of ``offering``, so the next order reads it."""
        self._prices.pop(offering, None)


def graduated_total(tiers: Sequence[Tier], quantity: int) -> Decimal:
    """Price ``quantity`` units band by band, unrounded."""
    total = Decimal(0)
    lower = 0
    for tier in tiers:
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if upper > lower:
            total += tier.unit_price * (upper - lower)
            lower = upper
        if lower >= quantity:
            break
    if lower < quantity:
        raise ValueError(
            f"price bands end at {lower} units, below the quantity {quantity}; "
            "the last band must have no upper bound"
        )
    return total


def charge_amount(
    unit: str,
    unit_price: Decimal,
    quantity: int,
    hours: int,
    currency: str,
    tiers: Sequence[Tier] = (),
) -> Decimal:
    """Compute quantity x unit price x billable hours, rounded half-even once.

    With ``tiers`` the units are priced band by band instead of at
    ``unit_price``; a price per order ignores quantity, so it has no bands.
    """
    if unit == "order":
        raw = unit_price
    elif unit not in ("unit", "unit_hour"):
        raise ValueError(f"unknown price unit {unit!r}")
    else:
        per_hour = graduated_total(tiers, quantity) if tiers else unit_price * quantity
        raw = per_hour * hours if unit == "unit_hour" else per_hour
    return round_money(raw, currency)


def blended_unit_price(tiers: Sequence[Tier], quantity: int) -> Decimal:
    """Return the average unit price of ``quantity`` units of a graduated price."""
    average = graduated_total(tiers, quantity) / quantity
    return average.quantize(UNIT_PRICE_PLACES, ROUND_HALF_EVEN).normalize()


def quote(session: Session, offering: str, quantity: int, hours: int) -> Quote:
    """Price an order at the current price, or raise 422 when there is none."""
    return quote_price(fetch_price(session, offering), offering, quantity, hours)


def quote_price(
    price: CurrentPrice | None, offering: str, quantity: int, hours: int
) -> Quote:
    """Price an order at ``price``, or raise 422 when the offering has no price."""
    if price is None:
        raise Unprocessable(
            f"No price is configured for offering '{offering}', so it cannot be "
            "ordered; ask the operator to set a price.",
            extra={"offering": offering},
        )
    tiers = price.tiers if price.unit != "order" else ()
    amount = charge_amount(
        price.unit, price.unit_price, quantity, hours, price.currency, tiers
    )
    # The lease keeps one unit price. For a graduated price that is the
    # average over the ordered units.
    # NOTE: leases.py prices extensions and refunds at this average, which can
    # differ from the banded amount by rounding at the eighth decimal place.
    unit_price = blended_unit_price(tiers, quantity) if tiers else price.unit_price
    if abs(to_minor(amount, price.currency)) >= MAX_AMOUNT_MINOR:
        raise Unprocessable(
            f"The order would cost {amount} {price.currency}, more than one order "
            "may cost; order fewer units or hours.",
            errors=[
                {
                    "field": "quantity",
                    "message": "order amount too large",
                    "type": "amount_too_large",
                }
            ],
        )
    return Quote(
        price_id=price.id,
        offering=offering,
        unit=price.unit,
        unit_price=unit_price,
        currency=price.currency,
        quantity=quantity,
        billable_hours=hours,
        amount=amount,
    )
