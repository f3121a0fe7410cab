"""Demo data for a fresh install: a price list, capacity pools and a tenant."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from rentgate.auth import create_key
from rentgate.models import CapacityPool, Price, Tenant

DEMO_PRICES = {
    "compute": ("unit_hour", Decimal("2.50")),
    "data": ("unit", Decimal("10.00")),
    "platform_training": ("unit_hour", Decimal("4.00")),
    "platform_inference": ("unit_hour", Decimal("1.20")),
    "custom_optimization": ("order", Decimal("500.00")),
    "custom_training": ("order", Decimal("1500.00")),
}

# (offering, pool, capacity, is the offering's default pool)
DEMO_POOLS = [
    ("compute", "standard", 512, True),
    ("compute", "a100-80gb", 64, False),
    ("compute", "h100-80gb", 64, False),
    ("data", "common-crawl-sample", 100, True),
    ("data", "imagenet-1k", 50, False),
    ("data", "wikipedia-2026", 100, False),
    ("platform_training", "training-slots", 16, True),
    ("platform_inference", "inference-slots", 32, True),
]

DEMO_TENANT = "demo"
DEMO_CREDIT_LIMIT_MINOR = 10_000_000  # 100,000.00 USD a month


def seed_demo(session: Session) -> str | None:
    """Add whatever demo rows are missing; return a new key if the tenant is new."""
    for offering, (unit, unit_price) in DEMO_PRICES.items():
        if session.scalars(select(Price).where(Price.offering == offering)).first():
            continue
        session.add(
            Price(offering=offering, unit=unit, unit_price=unit_price, currency="USD")
        )

    for offering, name, capacity, is_default in DEMO_POOLS:
        exists = session.scalars(
            select(CapacityPool).where(
                CapacityPool.offering == offering, CapacityPool.name == name
            )
        ).first()
        if exists is None:
            session.add(
                CapacityPool(
                    offering=offering,
                    name=name,
                    capacity=capacity,
                    used=0,
                    is_default=is_default,
                )
            )

    if session.scalars(select(Tenant).where(Tenant.name == DEMO_TENANT)).first():
        return None
    tenant = Tenant(
        name=DEMO_TENANT,
        credit_limit_minor=DEMO_CREDIT_LIMIT_MINOR,
        credit_currency="USD",
    )
    session.add(tenant)
    session.flush()
    _, key = create_key(session, role="tenant", tenant_id=tenant.id, label="demo")
    return key
