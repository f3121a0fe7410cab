"""Prices and capacity pools as the operator sets them.

A price is never edited: a change inserts a new price row valid from now, so
orders placed before keep the unit price their lease copied when it was sold.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from rentgate.accounting.common import field_error, iso
from rentgate.accounting.schemas import PoolCreate, PoolResize, PriceCreate, TierIn
from rentgate.errors import Conflict, NotFound, Unprocessable
from rentgate.models import CapacityPool, Price, PriceTier
from rentgate.money import format_decimal
from rentgate.pricing import current_price, price_tiers

log = logging.getLogger(__name__)


def price_to_dict(session: Session, price: Price, current_id: int | None) -> dict:
    """Render a price and its bands, marking the one new orders get."""
    tiers = price_tiers(session, price.id)
    return {
        "id": price.id,
        "offering": price.offering,
        "unit": price.unit,
        "unit_price": format_decimal(price.unit_price),
        "currency": price.currency,
        "tiers": [
            {"up_to": tier.up_to, "unit_price": format_decimal(tier.unit_price)}
            for tier in tiers
        ]
        or None,
        "valid_from": iso(price.valid_from),
        "current": price.id == current_id,
    }


def _check_tiers(unit: str, tiers: list[TierIn]) -> None:
    if unit == "order":
        raise field_error(
            "tiers",
            "a price per order has no quantity to band",
            "use unit 'unit' or 'unit_hour', or send a flat unit_price",
        )
    bounds = [tier.up_to for tier in tiers]
    if bounds[-1] is not None or None in bounds[:-1]:
        raise field_error(
            "tiers",
            "only the last band may, and must, have up_to null",
            "end the list with one open band such as "
            '{"up_to": null, "unit_price": "1.00"}',
        )
    closed = [bound for bound in bounds if bound is not None]
    if any(upper <= lower for lower, upper in zip(closed, closed[1:], strict=False)):
        raise field_error(
            "tiers",
            f"up_to values {closed} do not strictly increase",
            "list the bands from the lowest to the highest units",
        )


def set_price(session: Session, body: PriceCreate) -> Price:
    """Insert a new price of an offering, valid for orders placed from now on."""
    if (body.unit_price is None) == (body.tiers is None):
        raise field_error(
            "unit_price",
            "a price needs exactly one of unit_price and tiers",
            "send unit_price for a flat price or tiers for a graduated one",
        )
    if body.tiers is not None:
        _check_tiers(body.unit, body.tiers)
        unit_price = Decimal(body.tiers[0].unit_price)
    else:
        assert body.unit_price is not None
        unit_price = Decimal(body.unit_price)

    price = Price(
        offering=body.offering,
        unit=body.unit,
        unit_price=unit_price,
        currency=body.currency,
    )
    session.add(price)
    session.flush()
    for tier in body.tiers or []:
        session.add(
            PriceTier(
                price_id=price.id, up_to=tier.up_to, unit_price=Decimal(tier.unit_price)
            )
        )
    session.flush()
    log.info(
        "price set price_id=%s offering=%s unit=%s unit_price=%s %s tiers=%s",
        price.id,
        price.offering,
        price.unit,
        unit_price,
        price.currency,
        len(body.tiers or []),
    )
    return price


def list_prices(session: Session, offering: str | None = None) -> list[dict]:
    """Render every price, newest first per offering, marking the current ones."""
    query = select(Price).order_by(
        Price.offering, Price.valid_from.desc(), Price.id.desc()
    )
    if offering is not None:
        query = query.where(Price.offering == offering)
    rows = session.scalars(query).all()
    current: dict[str, int | None] = {}
    for row in rows:
        if row.offering not in current:
            found = current_price(session, row.offering)
            current[row.offering] = found.id if found else None
    return [price_to_dict(session, row, current[row.offering]) for row in rows]


def pool_to_dict(pool: CapacityPool) -> dict[str, Any]:
    """Render a capacity pool with its free units."""
    return {
        "id": pool.id,
        "offering": pool.offering,
        "name": pool.name,
        "capacity": pool.capacity,
        "used": pool.used,
        "free": pool.capacity - pool.used,
        "is_default": pool.is_default,
    }


def create_pool(session: Session, body: PoolCreate) -> CapacityPool:
    """Insert a pool; a new default pool takes over from the offering's old one."""
    exists = session.scalars(
        select(CapacityPool.id).where(
            CapacityPool.offering == body.offering, CapacityPool.name == body.name
        )
    ).first()
    if exists is not None:
        raise Conflict(
            f"Offering '{body.offering}' already has a pool named '{body.name}' "
            f"(id {exists}); resize it instead, or choose another name."
        )
    if body.is_default:
        session.execute(
            update(CapacityPool)
            .where(CapacityPool.offering == body.offering)
            .values(is_default=False)
        )
    pool = CapacityPool(
        offering=body.offering,
        name=body.name,
        capacity=body.capacity,
        used=0,
        is_default=body.is_default,
    )
    session.add(pool)
    session.flush()
    log.info("pool created pool_id=%s capacity=%s", pool.id, pool.capacity)
    return pool


def list_pools(session: Session) -> list[CapacityPool]:
    """Return every pool by offering and name."""
    return list(
        session.scalars(
            select(CapacityPool).order_by(CapacityPool.offering, CapacityPool.name)
        ).all()
    )


def get_pool(session: Session, pool_id: int) -> CapacityPool:
    """Return the pool or raise 404."""
    pool = session.get(CapacityPool, pool_id)
    if pool is None:
        raise NotFound(f"Capacity pool {pool_id} not found; list pools to find ids.")
    return pool


def update_pool(session: Session, pool: CapacityPool, body: PoolResize) -> None:
    """Apply a new capacity, a new default, or both, in the caller's transaction.

    Raises 422 for an empty body or ``is_default`` false, and 409 if the new
    capacity is below the units in use.
    """
    if body.capacity is None and body.is_default is None:
        raise Unprocessable(
            "The body sets neither capacity nor is_default; send capacity, "
            "is_default true, or both.",
            errors=[
                {
                    "field": "body",
                    "message": "needs capacity or is_default",
                    "type": "missing",
                }
            ],
        )
    if body.is_default is False:
        raise field_error(
            "is_default",
            "false is not accepted, because a pool stops being the default "
            "only when another pool of its offering becomes the default",
            "send is_default true to the pool that should take over",
        )
    if body.capacity is not None:
        resize_pool(session, pool, body.capacity)
    if body.is_default:
        make_default_pool(session, pool)


def make_default_pool(session: Session, pool: CapacityPool) -> None:
    """Make ``pool`` its offering's only default pool.

    One UPDATE sets the flag of every pool of the offering, true for ``pool``
    and false for the others, so concurrent orders see the old default or the
    new one, never both.
    """
    session.execute(
        update(CapacityPool)
        .where(CapacityPool.offering == pool.offering)
        .values(is_default=CapacityPool.id == pool.id)
        .execution_options(synchronize_session=False)
    )
    session.refresh(pool)
    log.info("pool made default pool_id=%s offering=%s", pool.id, pool.offering)


def resize_pool(session: Session, pool: CapacityPool, capacity: int) -> None:
    """Set a pool's capacity, or raise 409 if leases use more than the new size.

    The conditional UPDATE compares with the units in use at that moment, so a
    concurrent order cannot slip in between the check and the change.
    """
    changed = session.execute(
        update(CapacityPool)
        .where(CapacityPool.id == pool.id, CapacityPool.used <= capacity)
        .values(capacity=capacity)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(pool)
    if changed != 1:
        raise Conflict(
            f"Capacity pool '{pool.name}' has {pool.used} units in use, more than "
            f"the new capacity {capacity}; wait for leases to end or choose at "
            f"least {pool.used}.",
            errors=[
                {
                    "field": "capacity",
                    "message": f"below the {pool.used} units in use",
                    "type": "capacity_below_used",
                }
            ],
            extra={"used": pool.used},
        )
    log.info("pool resized pool_id=%s capacity=%s", pool.id, pool.capacity)
