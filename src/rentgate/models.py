"""Tables: tenants, API keys, prices, capacity pools, leases and the ledger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from rentgate.db import Base

LEASE_STATES = ("pending", "active", "released", "expired", "failed")
PRICE_UNITS = ("order", "unit", "unit_hour")
LEDGER_KINDS = ("charge", "refund", "extension")


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """Return a random UUID string, used as a lease id."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> Any:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> Any:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class ExactDecimal(TypeDecorator[Decimal]):
    """A NUMERIC on PostgreSQL, and a decimal string on SQLite, which has no exact
    numeric type. Only for values that are not summed in SQL, such as unit prices.
    """

    impl = Numeric(24, 8)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(24, 8, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return str(Decimal(value))
        return Decimal(value)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).normalize()


class Tenant(Base):
    """A customer account; its credit limit is per calendar month."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    credit_limit_minor: Mapped[int | None] = mapped_column(BigInteger)
    credit_currency: Mapped[str] = mapped_column(String(3), default="USD")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """An API key; only its SHA-256 hash is stored, found by its public prefix."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('tenant', 'admin')", name="role"),
        CheckConstraint(
            "(role = 'admin') OR (tenant_id IS NOT NULL)", name="tenant_key_tenant"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    role: Mapped[str] = mapped_column(String(10))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Price(Base):
    """The price of an offering from ``valid_from`` on; the newest one applies."""

    __tablename__ = "prices"
    __table_args__ = (
        CheckConstraint("unit IN ('order', 'unit', 'unit_hour')", name="unit"),
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        Index("ix_prices_offering_valid_from", "offering", "valid_from"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    offering: Mapped[str] = mapped_column(String(40))
    unit: Mapped[str] = mapped_column(String(10))
    unit_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CapacityPool(Base):
    """A pool of units of one offering; ``used`` never leaves 0..capacity."""

    __tablename__ = "capacity_pools"
    __table_args__ = (
        UniqueConstraint("offering", "name"),
        CheckConstraint("used >= 0", name="used_not_negative"),
        CheckConstraint("used <= capacity", name="used_within_capacity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    offering: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(80))
    capacity: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0)
    is_default: Mapped[bool] = mapped_column(default=False)


class CreditPeriod(Base):
    """A tenant's credit used in one calendar month, kept within its limit."""

    __tablename__ = "credit_periods"
    __table_args__ = (
        UniqueConstraint("tenant_id", "period"),
        CheckConstraint("used_minor >= 0", name="used_not_negative"),
        CheckConstraint("used_minor <= limit_minor", name="used_within_limit"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    period: Mapped[str] = mapped_column(String(7))
    limit_minor: Mapped[int] = mapped_column(BigInteger)
    used_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class Lease(Base):
    """One order: what was reserved, at what price, and its state."""

    __tablename__ = "leases"
    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'active', 'released', 'expired', 'failed')",
            name="state",
        ),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_leases_tenant_created", "tenant_id", "created_at"),
        Index("ix_leases_state_created", "state", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    offering: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(80))
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("capacity_pools.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    hours: Mapped[int | None] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(10))
    unit_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    credit_period: Mapped[str | None] = mapped_column(String(7))
    state: Mapped[str] = mapped_column(String(10), default="pending")
    resource_id: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LedgerEntry(Base):
    """A revenue entry; entries are only inserted, never updated or deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("kind IN ('charge', 'refund', 'extension')", name="kind"),
        # One charge per lease, whatever retries or concurrent settles happen.
        Index(
            "uq_ledger_entries_one_charge",
            "lease_id",
            unique=True,
            sqlite_where=text("kind = 'charge'"),
            postgresql_where=text("kind = 'charge'"),
        ),
        Index("ix_ledger_entries_booked_offering", "booked_at", "offering"),
        Index("ix_ledger_entries_tenant_booked", "tenant_id", "booked_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    offering: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    booked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    note: Mapped[str] = mapped_column(String(200), default="")


class LocalAllocation(Base):
    """A resource handed out by the embedded ``local`` provider, one per lease."""

    __tablename__ = "local_allocations"

    lease_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(200))
    offering: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """A claimed ``Idempotency-Key`` and, once finished, the stored response."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("tenant_id", "route", "key"),
        Index("ix_idempotency_keys_created", "created_at"),
        Index("ix_idempotency_keys_lease_id", "lease_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    route: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    lease_id: Mapped[str | None] = mapped_column(String(36))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


COST_KINDS = ("capex", "opex", "labour", "provider")


class PriceTier(Base):
    """One band of a graduated price: units up to ``up_to`` cost ``unit_price``.

    The bands of a price are read in ascending ``up_to`` order; the last band has
    no upper bound (``up_to`` is NULL) and prices every further unit.
    """

    __tablename__ = "price_tiers"
    __table_args__ = (
        UniqueConstraint("price_id", "up_to"),
        CheckConstraint("up_to IS NULL OR up_to > 0", name="up_to_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    price_id: Mapped[int] = mapped_column(ForeignKey("prices.id"), index=True)
    up_to: Mapped[int | None] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(ExactDecimal)


class Cost(Base):
    """A cost of running the business, in integer minor units.

    ``capex`` is spread over ``amortisation_months`` from ``start_month``;
    ``opex`` and ``labour`` recur from ``start_month`` to ``end_month`` (open
    when NULL), ``amount_minor`` being due every ``period_months`` (1 or 12);
    ``provider`` is what an upstream charged for one lease, in ``start_month``.
    """

    __tablename__ = "costs"
    __table_args__ = (
        CheckConstraint("kind IN ('capex', 'opex', 'labour', 'provider')", name="kind"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        CheckConstraint(
            "(kind = 'capex') = (amortisation_months IS NOT NULL)",
            name="capex_amortisation",
        ),
        CheckConstraint(
            "amortisation_months IS NULL OR amortisation_months BETWEEN 1 AND 600",
            name="amortisation_range",
        ),
        CheckConstraint(
            "(kind IN ('opex', 'labour')) = (period_months IS NOT NULL)",
            name="recurring_period",
        ),
        CheckConstraint(
            "period_months IS NULL OR period_months IN (1, 12)", name="period_months"
        ),
        CheckConstraint(
            "(kind = 'provider') = (lease_id IS NOT NULL)", name="provider_lease"
        ),
        Index("ix_costs_kind_start_month", "kind", "start_month"),
        Index("ix_costs_lease_id", "lease_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    start_month: Mapped[str] = mapped_column(String(7))
    end_month: Mapped[str | None] = mapped_column(String(7))
    amortisation_months: Mapped[int | None] = mapped_column(Integer)
    period_months: Mapped[int | None] = mapped_column(Integer)
    lease_id: Mapped[str | None] = mapped_column(ForeignKey("leases.id"))
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Reports sum amount_minor by month and offering for one currency; this index
# covers those queries, so PostgreSQL can run them as an index-only scan.
Index(
    "ix_ledger_entries_currency_booked",
    LedgerEntry.currency,
    LedgerEntry.booked_at,
    LedgerEntry.offering,
    LedgerEntry.amount_minor,
)
# Ledger verification reads the entries of each lease.
Index("ix_ledger_entries_lease_id", LedgerEntry.lease_id)


class ClosedRevenueMonth(Base):
    """A month whose revenue is summed once into ``revenue_months``.

    Entries are booked at the time of insertion and never updated or deleted,
    so a month's sums cannot change once it has ended and a margin has passed.
    """

    __tablename__ = "revenue_closed_months"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RevenueMonth(Base):
    """The revenue of one offering in one closed month, in minor units."""

    __tablename__ = "revenue_months"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    offering: Mapped[str] = mapped_column(String(40), primary_key=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
