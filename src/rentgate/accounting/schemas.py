"""Pydantic models of the operator's request bodies and report queries.

Money travels as decimal strings such as ``"2.50"``, never as JSON numbers,
so no amount passes through a float.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from rentgate.accounting.months import MONTH_PATTERN
from rentgate.config import OFFERINGS
from rentgate.money import CURRENCIES

Offering = Literal[
    "compute",
    "data",
    "platform_training",
    "platform_inference",
    "custom_optimization",
    "custom_training",
]
assert set(Offering.__args__) == set(OFFERINGS)  # type: ignore[attr-defined]

Currency = Literal["USD", "EUR", "GBP", "CHF", "CAD", "JPY"]
assert set(Currency.__args__) == set(CURRENCIES)  # type: ignore[attr-defined]

MoneyText = Annotated[
    StrictStr,
    Field(
        pattern=r"^(0|[1-9][0-9]{0,13})(\.[0-9]{1,8})?$",
        description='Decimal amount as a string, such as "2.50".',
    ),
]
Month = Annotated[
    StrictStr, Field(pattern=MONTH_PATTERN, description="Calendar month, YYYY-MM.")
]
Name = Annotated[
    StrictStr,
    Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
]


class Strict(BaseModel):
    """Base of every operator body: unknown fields and coercion are rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)


class TenantCreate(Strict):
    """Body of ``POST /admin/tenants``."""

    name: Name
    credit_limit: MoneyText | None = Field(
        default=None, description="Monthly credit limit; null means no limit."
    )
    currency: Currency = "USD"


class CreditLimitUpdate(Strict):
    """Body of ``PUT /admin/tenants/<id>/credit-limit``."""

    credit_limit: MoneyText | None = Field(
        description="New monthly limit in the tenant's currency; null removes it."
    )


class KeyCreate(Strict):
    """Body of ``POST /admin/keys``."""

    role: Literal["tenant", "admin"] = "tenant"
    tenant_id: Annotated[StrictInt, Field(ge=1, le=2_147_483_647)] | None = None
    label: Annotated[StrictStr, Field(max_length=120)] = ""


class TierIn(Strict):
    """One band of a graduated price."""

    up_to: Annotated[StrictInt, Field(ge=1, le=1_000_000_000)] | None = Field(
        description="Last unit of the band; null for the final, open band."
    )
    unit_price: MoneyText


class PriceCreate(Strict):
    """Body of ``POST /admin/prices``: a flat ``unit_price`` or ``tiers``."""

    offering: Offering
    unit: Literal["order", "unit", "unit_hour"]
    currency: Currency
    unit_price: MoneyText | None = None
    tiers: Annotated[list[TierIn], Field(min_length=2, max_length=20)] | None = None


class PoolCreate(Strict):
    """Body of ``POST /admin/pools``."""

    offering: Offering
    name: Name
    capacity: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)]
    is_default: StrictBool = False


class PoolResize(Strict):
    """Body of ``PATCH /admin/pools/<id>``: a new capacity, a new default, or both."""

    capacity: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)] | None = None
    is_default: StrictBool | None = Field(
        default=None,
        description="true makes this pool the offering's only default pool. "
        "false is rejected, so make another pool the default instead.",
    )


class CostCreate(Strict):
    """Body of ``POST /admin/costs``; which fields apply depends on ``kind``."""

    kind: Literal["capex", "opex", "labour", "provider"]
    amount: MoneyText
    currency: Currency
    start_month: Month | None = Field(
        default=None,
        description="First month; for provider costs the lease's month by default.",
    )
    end_month: Month | None = Field(
        default=None, description="Last month of a recurring cost; null is open."
    )
    amortisation_months: Annotated[StrictInt, Field(ge=1, le=600)] | None = None
    per: Literal["month", "year"] | None = Field(
        default=None, description="Whether a recurring amount is monthly or yearly."
    )
    lease_id: Annotated[StrictStr, Field(min_length=1, max_length=36)] | None = None
    note: Annotated[StrictStr, Field(max_length=200)] = ""


class ReportQuery(BaseModel):
    """Query string of the report routes; months are inclusive."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_month: Month | None = Field(default=None, alias="from")
    to_month: Month | None = Field(default=None, alias="to")
    currency: Currency = "USD"
    capex: Literal["amortised", "expensed"] = "amortised"


class TenantOut(BaseModel):
    """A tenant; money as decimal strings."""

    id: int
    name: str
    credit_limit: str | None
    currency: str
    created_at: str


class TenantList(BaseModel):
    """Every tenant by id."""

    items: list[TenantOut]


class CreditOut(BaseModel):
    """This month's credit of the calling tenant; limit and remaining are null
    when the tenant has no limit."""

    period: str
    currency: str
    limit: str | None
    used: str
    remaining: str | None


class KeyOut(BaseModel):
    """An API key without its secret."""

    id: int
    prefix: str
    role: Literal["tenant", "admin"]
    tenant_id: int | None
    label: str
    created_at: str
    revoked_at: str | None


class KeyCreated(KeyOut):
    """A new API key; ``key`` is the secret, returned only in this response."""

    key: str


class KeyList(BaseModel):
    """API keys by id."""

    items: list[KeyOut]


class TierOut(BaseModel):
    """One band of a graduated price."""

    up_to: int | None
    unit_price: str


class PriceOut(BaseModel):
    """A price; ``current`` marks the one new orders of its offering get."""

    id: int
    offering: str
    unit: str
    unit_price: str
    currency: str
    tiers: list[TierOut] | None
    valid_from: str
    current: bool


class PriceList(BaseModel):
    """Prices by offering, newest first."""

    items: list[PriceOut]


class PriceQuery(BaseModel):
    """Query string of ``GET /admin/prices``."""

    model_config = ConfigDict(extra="forbid")

    offering: Offering | None = None


class PoolOut(BaseModel):
    """A capacity pool and its free units."""

    id: int
    offering: str
    name: str
    capacity: int
    used: int
    free: int
    is_default: bool


class PoolList(BaseModel):
    """Capacity pools by offering and name."""

    items: list[PoolOut]


class CostOut(BaseModel):
    """A cost as entered."""

    id: int
    kind: str
    amount: str
    currency: str
    start_month: str
    end_month: str | None
    amortisation_months: int | None
    per: Literal["month", "year"] | None
    lease_id: str | None
    note: str
    created_at: str


class CostList(BaseModel):
    """Costs by start month."""

    items: list[CostOut]


class CostQuery(BaseModel):
    """Query string of ``GET /admin/costs``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["capex", "opex", "labour", "provider"] | None = None


class RevenueRow(BaseModel):
    """Revenue of one offering in one month."""

    month: str
    offering: str
    amount: str


class MonthAmount(BaseModel):
    """An amount in one month."""

    month: str
    amount: str


class OfferingAmount(BaseModel):
    """An amount of one offering."""

    offering: str
    amount: str


class RevenueReport(BaseModel):
    """Revenue from the ledger by month and offering, by month and by offering."""

    currency: str
    from_month: str = Field(alias="from")
    to_month: str = Field(alias="to")
    rows: list[RevenueRow]
    by_month: list[MonthAmount]
    by_offering: list[OfferingAmount]
    total: str


class CostMonth(BaseModel):
    """Costs of one month by kind."""

    month: str
    capex: str
    opex: str
    labour: str
    provider: str
    total: str


class CostReport(BaseModel):
    """Costs by month and kind, capital expenditure amortised or expensed."""

    currency: str
    from_month: str = Field(alias="from")
    to_month: str = Field(alias="to")
    capex: Literal["amortised", "expensed"]
    months: list[CostMonth]
    by_kind: dict[str, str]
    total: str


class ProfitMonth(BaseModel):
    """Revenue, costs, profit and cumulative profit of one month."""

    month: str
    revenue: str
    costs: str
    profit: str
    cumulative_profit: str


class ProfitYear(BaseModel):
    """Revenue, costs and profit of the report's months in one calendar year."""

    year: str
    revenue: str
    costs: str
    profit: str


class ProfitTotals(BaseModel):
    """Revenue, costs and profit over the whole report."""

    revenue: str
    costs: str
    profit: str


class BreakEven(BaseModel):
    """The break-even month: reached, projected at the run rate, or none."""

    status: Literal["reached", "projected", "not_at_run_rate"]
    month: str | None
    run_rate_months: int
    run_rate_revenue: str
    run_rate_costs: str
    monthly_shortfall: str
    message: str


class ProfitReport(BaseModel):
    """Profit = revenue - costs by month, cumulative, by year, and break-even."""

    currency: str
    from_month: str = Field(alias="from")
    to_month: str = Field(alias="to")
    capex: Literal["amortised", "expensed"]
    months: list[ProfitMonth]
    years: list[ProfitYear]
    totals: ProfitTotals
    break_even: BreakEven


class StatementEntry(BaseModel):
    """One ledger entry on a statement."""

    id: int
    booked_at: str
    lease_id: str
    offering: str
    kind: Literal["charge", "extension", "refund"]
    amount: str
    currency: str
    note: str


class StatementTotal(BaseModel):
    """A statement's sums in one currency; total = charges + extensions + refunds."""

    currency: str
    charges: str
    extensions: str
    refunds: str
    total: str


class Statement(BaseModel):
    """A tenant's ledger entries of one month and their totals."""

    tenant_id: int
    tenant: str
    month: str
    entries: list[StatementEntry]
    totals: list[StatementTotal]
