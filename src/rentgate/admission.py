"""Reservations of capacity and credit, made only by conditional UPDATEs.

Each UPDATE checks the limit in its WHERE clause, so concurrent transactions
on any number of processes cannot oversell: PostgreSQL re-evaluates the
condition after the row lock is released, and SQLite runs one writer at a
time. CHECK constraints on the tables stop any bug that slips past.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, select, update
from sqlalchemy.orm import Session

from rentgate.db import dialect_insert
from rentgate.errors import Conflict, PaymentRequired, Unprocessable
from rentgate.models import CapacityPool, CreditPeriod, Lease, Tenant, utcnow
from rentgate.money import format_money
from rentgate.pricing import Quote


def find_pool(session: Session, offering: str, name: str | None) -> CapacityPool | None:
    """Return the named pool, the offering's default pool, or None if unpooled."""
    if name is not None:
        pool = session.scalars(
            select(CapacityPool).where(
                CapacityPool.offering == offering, CapacityPool.name == name
            )
        ).first()
        if pool is None:
            names = session.scalars(
                select(CapacityPool.name)
                .where(CapacityPool.offering == offering)
                .order_by(CapacityPool.name)
            ).all()
            raise Unprocessable(
                f"No capacity pool named '{name}' for offering '{offering}'; "
                f"choose one of: {', '.join(names) or 'none configured'}.",
                errors=[
                    {
                        "field": "gpu_model" if offering == "compute" else "dataset",
                        "message": f"unknown pool '{name}'",
                        "type": "unknown_pool",
                    }
                ],
            )
        return pool
    return session.scalars(
        select(CapacityPool)
        .where(CapacityPool.offering == offering)
        .order_by(CapacityPool.is_default.desc(), CapacityPool.id)
        .limit(1)
    ).first()


@dataclass(frozen=True)
class PoolRef:
    """The pool an order took its units from."""

    id: int
    name: str


def _take_pool_statement(named: bool) -> Any:
    # Built once per variant, since the statement runs on every order.
    pools = CapacityPool.__table__
    quantity = bindparam("take_quantity", type_=Integer)
    choice = select(pools.c.id).where(pools.c.offering == bindparam("pool_offering"))
    if named:
        choice = choice.where(pools.c.name == bindparam("pool_name"))
    choice = choice.order_by(pools.c.is_default.desc(), pools.c.id).limit(1)
    return (
        update(pools)
        .where(
            pools.c.id == choice.scalar_subquery(),
            pools.c.used + quantity <= pools.c.capacity,
        )
        .values(used=pools.c.used + quantity)
        .returning(pools.c.id, pools.c.name)
    )


TAKE_NAMED_POOL = _take_pool_statement(named=True)
TAKE_DEFAULT_POOL = _take_pool_statement(named=False)


def reserve_capacity(
    session: Session, offering: str, name: str | None, quantity: int
) -> PoolRef | None:
    """Take ``quantity`` units from the pool, or raise 409 if too few are free.

    The common case is one UPDATE .. RETURNING that picks the pool and takes the
    units. Only a miss looks further, to tell an unpooled offering, an unknown
    pool name and a full pool apart.
    """
    statement = TAKE_NAMED_POOL if name is not None else TAKE_DEFAULT_POOL
    reserved = session.execute(
        statement,
        {"pool_offering": offering, "pool_name": name, "take_quantity": quantity},
    ).first()
    if reserved is not None:
        return PoolRef(reserved.id, reserved.name)

    pool = find_pool(session, offering, name)
    if pool is None:
        return None
    session.refresh(pool)
    free = pool.capacity - pool.used
    raise Conflict(
        f"Capacity pool '{pool.name}' of offering '{offering}' has {free} of "
        f"{pool.capacity} units free and the order asks for {quantity}; order "
        "fewer units or retry later.",
        extra={"pool": pool.name, "free": free, "capacity": pool.capacity},
    )


def current_period() -> str:
    """Return the calendar month credit is counted in, such as ``2026-12``."""
    return utcnow().strftime("%Y-%m")


def reserve_credit(session: Session, tenant_id: int, priced: Quote) -> str | None:
    """Count an order against the tenant's monthly limit; 402 if it would pass it."""
    return reserve_credit_amount(
        session, tenant_id, priced.amount_minor, priced.currency
    )


def reserve_credit_amount(
    session: Session,
    tenant_id: int,
    amount: int,
    currency: str,
    charged_for: str = "order",
) -> str | None:
    """Count ``amount`` minor units against this month's limit, or raise 402.

    ``charged_for`` names what costs the amount in the 402 message.
    """
    tenants = Tenant.__table__
    tenant = session.execute(
        select(
            tenants.c.id, tenants.c.credit_limit_minor, tenants.c.credit_currency
        ).where(tenants.c.id == tenant_id)
    ).first()
    if tenant is None or tenant.credit_limit_minor is None:
        return None
    if currency != tenant.credit_currency:
        raise Unprocessable(
            f"The order is priced in {currency} but the tenant's credit "
            f"limit is in {tenant.credit_currency}; ask the operator to align them."
        )
    period = current_period()
    credit = CreditPeriod.__table__
    take = (
        update(credit)
        .where(
            credit.c.tenant_id == tenant_id,
            credit.c.period == period,
            credit.c.used_minor + amount <= credit.c.limit_minor,
        )
        .values(used_minor=credit.c.used_minor + amount)
    )
    updated = session.execute(take).rowcount
    if updated != 1:
        # The month's row may not exist yet; create it and try once more.
        _ensure_period(session, tenant, period)
        updated = session.execute(take).rowcount
    if updated != 1:
        row = session.scalars(
            select(CreditPeriod).where(
                CreditPeriod.tenant_id == tenant_id, CreditPeriod.period == period
            )
        ).one()
        session.refresh(row)
        remaining = row.limit_minor - row.used_minor
        raise PaymentRequired(
            f"The {charged_for} costs {format_money(amount, currency)} "
            f"{currency} but only {format_money(remaining, currency)} "
            f"of the credit limit for {period} remains; release leases or ask the "
            "operator to raise the limit.",
            extra={"remaining": format_money(remaining, currency)},
        )
    return period


def _ensure_period(session: Session, tenant: Any, period: str) -> None:
    # INSERT .. ON CONFLICT DO NOTHING lets the first orders of a new month (or
    # a new tenant) race safely: one insert wins, the others see its row.
    values = {
        "tenant_id": tenant.id,
        "period": period,
        "limit_minor": max(tenant.credit_limit_minor or 0, 0),
        "used_minor": 0,
    }
    session.execute(
        dialect_insert(session)(CreditPeriod)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "period"])
    )


def release_reservation(session: Session, lease: Lease) -> None:
    """Give back the capacity and credit a lease reserved."""
    release_capacity(session, lease)
    release_credit(session, lease, lease.amount_minor)


def release_capacity(session: Session, lease: Lease) -> None:
    """Return the lease's units to its pool."""
    if lease.pool_id is None:
        return
    session.execute(
        update(CapacityPool)
        .where(CapacityPool.id == lease.pool_id)
        .values(used=CapacityPool.used - lease.quantity)
        .execution_options(synchronize_session=False)
    )


def release_credit(session: Session, lease: Lease, amount_minor: int) -> None:
    """Return ``amount_minor`` of credit to the period the lease was counted in."""
    if lease.credit_period is None or amount_minor <= 0:
        return
    session.execute(
        update(CreditPeriod)
        .where(
            CreditPeriod.tenant_id == lease.tenant_id,
            CreditPeriod.period == lease.credit_period,
        )
        .values(used_minor=CreditPeriod.used_minor - amount_minor)
        .execution_options(synchronize_session=False)
    )


def return_credit(
    session: Session, tenant_id: int, period: str, amount_minor: int
) -> int:
    """Take up to ``amount_minor`` off a month's used credit; return the amount taken.

    Used credit never drops below zero, so less is taken when the month's row
    has less used, and nothing when the tenant has no row for that month.
    """
    credit = CreditPeriod.__table__
    row = session.execute(
        select(credit.c.id, credit.c.used_minor)
        .where(credit.c.tenant_id == tenant_id, credit.c.period == period)
        .with_for_update()
    ).first()
    if row is None or amount_minor <= 0:
        return 0

    returned = min(amount_minor, row.used_minor)
    session.execute(
        update(credit)
        .where(credit.c.id == row.id)
        .values(used_minor=credit.c.used_minor - returned)
    )
    return returned


def set_credit_limit(session: Session, tenant: Tenant, limit_minor: int | None) -> None:
    """Change a tenant's monthly limit, this month's included, or raise 409.

    The current month's row is upserted rather than only updated: an order
    racing this change may be about to insert that row with the old limit, and
    the upsert waits for it and then overwrites the limit. A limit below the
    credit already used this month is rejected, because the row's CHECK keeps
    used_minor <= limit_minor.
    """
    tenant.credit_limit_minor = limit_minor
    if limit_minor is None:
        session.flush()
        return

    period = current_period()
    values = {
        "tenant_id": tenant.id,
        "period": period,
        "limit_minor": limit_minor,
        "used_minor": 0,
    }
    statement = dialect_insert(session)(CreditPeriod).values(**values)
    changed = session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "period"],
            set_={"limit_minor": statement.excluded.limit_minor},
            where=CreditPeriod.used_minor <= statement.excluded.limit_minor,
        ).returning(CreditPeriod.id)
    ).first()
    if changed is None:
        used = session.scalars(
            select(CreditPeriod.used_minor).where(
                CreditPeriod.tenant_id == tenant.id, CreditPeriod.period == period
            )
        ).one()
        currency = tenant.credit_currency
        raise Conflict(
            f"Tenant '{tenant.name}' has already used {format_money(used, currency)} "
            f"{currency} of credit in {period}, more than the new limit of "
            f"{format_money(limit_minor, currency)}; set a limit of at least "
            f"{format_money(used, currency)}.",
            extra={"used": format_money(used, currency), "period": period},
        )
    session.flush()


def credit_status(session: Session, tenant: Tenant) -> tuple[str, int, int | None]:
    """Return this month, the credit used in it and the limit (None: unlimited)."""
    period = current_period()
    used = session.scalars(
        select(CreditPeriod.used_minor).where(
            CreditPeriod.tenant_id == tenant.id, CreditPeriod.period == period
        )
    ).first()
    return period, int(used or 0), tenant.credit_limit_minor
