"""CLI commands of the operator: tenants, keys, prices, pools, costs, reports
and the ledger check. ``register_commands`` attaches them to ``rentgate``.

Each command validates its input with the same pydantic models as the admin
API, so both reject the same input with the same message.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from rentgate.accounting import catalog, costs, reports, statements, tenants
from rentgate.accounting.common import money
from rentgate.accounting.schemas import (
    CostCreate,
    CreditLimitUpdate,
    PoolCreate,
    PoolResize,
    PriceCreate,
    ReportQuery,
)
from rentgate.errors import RentgateError, from_validation_error

M = TypeVar("M", bound=BaseModel)

CURRENCY_CHOICE = click.Choice(["USD", "EUR", "GBP", "CHF", "CAD", "JPY"])


def _validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise click.ClickException(from_validation_error(exc).detail) from None


@contextmanager
def _session(write: bool = False) -> Iterator[Session]:
    """Open a session (a committed transaction if ``write``); errors become
    click errors with the same message the API sends."""
    from rentgate.cli import _runtime

    runtime = _runtime()
    try:
        if write:
            with runtime.transaction() as session:
                yield session
        else:
            with runtime.read_sessions() as session:
                yield session
    except RentgateError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        runtime.close()


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render rows as a plain text table; numbers and amounts align right."""
    cells = [[("" if value is None else str(value)) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], len(value))

    def numeric(value: str) -> bool:
        return value.lstrip("-").replace(".", "", 1).isdigit()

    header = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    lines = [header.rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    for row in cells:
        lines.append(
            "  ".join(
                value.rjust(width) if numeric(value) else value.ljust(width)
                for value, width in zip(row, widths, strict=True)
            ).rstrip()
        )
    return "\n".join(lines)


def _emit(headers: Sequence[str], rows: Sequence[Sequence[Any]], as_csv: bool) -> None:
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return
    click.echo(render_table(headers, rows))


def _rows(items: list[dict[str, Any]], columns: Sequence[str]) -> list[list[Any]]:
    return [[item[column] for column in columns] for item in items]


def register_commands(
    main: click.Group, tenants_group: click.Group, keys_group: click.Group
) -> None:
    """Attach the operator's commands to the ``rentgate`` group."""
    tenants_group.add_command(tenants_list)
    tenants_group.add_command(tenants_set_credit_limit)
    keys_group.add_command(keys_list)
    keys_group.add_command(keys_revoke)
    for group in (prices, pools, costs_group, reports_group, ledger):
        main.add_command(group)


# Tenants and keys.


@click.command("list")
def tenants_list() -> None:
    """List tenants and their monthly credit limits."""
    with _session() as session:
        items = [tenants.tenant_to_dict(row) for row in tenants.list_tenants(session)]
    columns = ("id", "name", "credit_limit", "currency")
    click.echo(render_table(columns, _rows(items, columns)))


@click.command("set-credit-limit")
@click.argument("name")
@click.argument("limit")
def tenants_set_credit_limit(name: str, limit: str) -> None:
    """Set tenant NAME's monthly credit LIMIT, such as 5000.00, or 'none'."""
    body = _validate(
        CreditLimitUpdate, {"credit_limit": None if limit == "none" else limit}
    )
    with _session(write=True) as session:
        tenant = tenants.find_tenant(session, name)
        tenants.set_credit_limit(session, tenant, body)
        rendered = tenants.tenant_to_dict(tenant)
    click.echo(
        f"tenant {name!r}: credit limit {rendered['credit_limit'] or 'none'} "
        f"{rendered['currency']} a month, from this month on"
    )


@click.command("list")
@click.option("--tenant", "tenant_name", default=None, help="Only this tenant's keys.")
def keys_list(tenant_name: str | None) -> None:
    """List API keys by prefix; secrets are never stored, so never shown."""
    with _session() as session:
        tenant_id = None
        if tenant_name is not None:
            tenant_id = tenants.find_tenant(session, tenant_name).id
        items = [
            tenants.key_to_dict(row)
            for row in tenants.list_api_keys(session, tenant_id)
        ]
    columns = ("id", "prefix", "role", "tenant_id", "label", "revoked_at")
    click.echo(render_table(columns, _rows(items, columns)))


@click.command("revoke")
@click.argument("reference")
def keys_revoke(reference: str) -> None:
    """Revoke the key with id or prefix REFERENCE; it stops working at once."""
    with _session(write=True) as session:
        key = tenants.revoke_api_key(session, tenants.find_api_key(session, reference))
        prefix = key.prefix
    click.echo(f"key {prefix} revoked")


# Prices.


@click.group()
def prices() -> None:
    """Set and list prices; a new price applies to orders placed after it."""


def _parse_tier(text: str) -> dict[str, Any]:
    bound, separator, unit_price = text.partition("=")
    if not separator or not (bound == "rest" or bound.isdigit()):
        raise click.BadParameter(
            f"{text!r} is not UP_TO=PRICE; write bands such as 100=2.50 and rest=2.00",
            param_hint="--tier",
        )
    return {"up_to": None if bound == "rest" else int(bound), "unit_price": unit_price}


@prices.command("set")
@click.argument("offering")
@click.option(
    "--unit",
    required=True,
    type=click.Choice(["order", "unit", "unit_hour"]),
    help="What one unit price buys: a whole order, a unit, or a unit for an hour.",
)
@click.option("--price", "unit_price", default=None, help="Flat unit price, 2.50.")
@click.option(
    "--tier",
    "tiers",
    multiple=True,
    help="Graduated band UP_TO=PRICE, repeated; the last is rest=PRICE.",
)
@click.option("--currency", default="USD", show_default=True, type=CURRENCY_CHOICE)
def prices_set(
    offering: str,
    unit: str,
    unit_price: str | None,
    tiers: tuple[str, ...],
    currency: str,
) -> None:
    """Set the price of OFFERING for orders placed from now on."""
    data: dict[str, Any] = {"offering": offering, "unit": unit, "currency": currency}
    if unit_price is not None:
        data["unit_price"] = unit_price
    if tiers:
        data["tiers"] = [_parse_tier(text) for text in tiers]
    body = _validate(PriceCreate, data)
    with _session(write=True) as session:
        price = catalog.set_price(session, body)
        price_id = price.id
    click.echo(f"price {price_id} of {offering} applies to new orders from now on")


@prices.command("list")
@click.option("--offering", default=None, help="Only this offering's prices.")
def prices_list(offering: str | None) -> None:
    """List prices, newest first; 'current' marks what new orders get."""
    with _session() as session:
        items = catalog.list_prices(session, offering)
    rows = []
    for item in items:
        tiers = " ".join(
            f"{tier['up_to'] or 'rest'}={tier['unit_price']}"
            for tier in item["tiers"] or []
        )
        rows.append(
            [
                item["id"],
                item["offering"],
                item["unit"],
                item["unit_price"],
                item["currency"],
                tiers,
                item["valid_from"],
                "current" if item["current"] else "",
            ]
        )
    headers = ("id", "offering", "unit", "unit_price", "currency", "tiers")
    click.echo(render_table((*headers, "valid_from", ""), rows))


# Capacity pools.


@click.group()
def pools() -> None:
    """Create, list and resize capacity pools, and choose the default pools."""


@pools.command("create")
@click.argument("offering")
@click.argument("name")
@click.argument("capacity", type=int)
@click.option("--default", "is_default", is_flag=True, help="Make it the default.")
def pools_create(offering: str, name: str, capacity: int, is_default: bool) -> None:
    """Create pool NAME of OFFERING with CAPACITY units."""
    body = _validate(
        PoolCreate,
        {
            "offering": offering,
            "name": name,
            "capacity": capacity,
            "is_default": is_default,
        },
    )
    with _session(write=True) as session:
        pool = catalog.create_pool(session, body)
        pool_id = pool.id
    click.echo(f"pool {pool_id} {offering}/{name} created with {capacity} units")


@pools.command("list")
def pools_list() -> None:
    """List pools with their used and free units."""
    with _session() as session:
        items = [catalog.pool_to_dict(row) for row in catalog.list_pools(session)]
    columns = ("id", "offering", "name", "capacity", "used", "free", "is_default")
    click.echo(render_table(columns, _rows(items, columns)))


@pools.command("resize")
@click.argument("pool_id", type=int)
@click.argument("capacity", type=int)
def pools_resize(pool_id: int, capacity: int) -> None:
    """Set the CAPACITY of pool POOL_ID; it may not drop below units in use."""
    body = _validate(PoolResize, {"capacity": capacity})
    with _session(write=True) as session:
        pool = catalog.get_pool(session, pool_id)
        catalog.update_pool(session, pool, body)
    click.echo(f"pool {pool_id} now has {capacity} units")


@pools.command("set-default")
@click.argument("pool_id", type=int)
def pools_set_default(pool_id: int) -> None:
    """Make pool POOL_ID the default of its offering, replacing the old default.

    Orders that name no pool take their units from the default pool.
    """
    body = _validate(PoolResize, {"is_default": True})
    with _session(write=True) as session:
        pool = catalog.get_pool(session, pool_id)
        catalog.update_pool(session, pool, body)
        offering, name = pool.offering, pool.name
    click.echo(f"pool {pool_id} {offering}/{name} is now the default of {offering}")


# Costs.


@click.group("costs")
def costs_group() -> None:
    """Record and list costs."""


@costs_group.command("add")
@click.argument("kind", type=click.Choice(["capex", "opex", "labour", "provider"]))
@click.argument("amount")
@click.option("--currency", default="USD", show_default=True, type=CURRENCY_CHOICE)
@click.option("--start-month", default=None, help="First month, YYYY-MM.")
@click.option("--end-month", default=None, help="Last month of opex or labour.")
@click.option(
    "--amortisation-months", type=int, default=None, help="Months to spread capex."
)
@click.option(
    "--per",
    type=click.Choice(["month", "year"]),
    default=None,
    help="Whether an opex or labour AMOUNT is monthly (default) or yearly.",
)
@click.option("--lease", "lease_id", default=None, help="Lease of a provider cost.")
@click.option("--note", default="", help="Free text, up to 200 characters.")
def costs_add(kind: str, amount: str, **options: Any) -> None:
    """Record a cost of KIND, AMOUNT such as 10000000.00."""
    data = {"kind": kind, "amount": amount}
    data.update({key: value for key, value in options.items() if value is not None})
    if kind in ("opex", "labour"):
        data.setdefault("per", "month")
    body = _validate(CostCreate, data)
    with _session(write=True) as session:
        cost = costs.add_cost(session, body)
        rendered = costs.cost_to_dict(cost)
    click.echo(
        f"cost {rendered['id']} recorded: {kind} {rendered['amount']} "
        f"{rendered['currency']} from {rendered['start_month']}"
    )


@costs_group.command("list")
@click.option("--kind", default=None, help="Only costs of this kind.")
def costs_list(kind: str | None) -> None:
    """List recorded costs."""
    with _session() as session:
        items = [costs.cost_to_dict(row) for row in costs.list_costs(session, kind)]
    columns = (
        "id",
        "kind",
        "amount",
        "currency",
        "start_month",
        "end_month",
        "amortisation_months",
        "per",
        "lease_id",
        "note",
    )
    click.echo(render_table(columns, _rows(items, columns)))


# Reports.


@click.group("reports")
def reports_group() -> None:
    """Revenue, cost and profit reports, and tenant statements."""


def report_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options every report takes."""
    options = [
        click.option("--from", "from_month", default=None, help="First month."),
        click.option("--to", "to_month", default=None, help="Last month."),
        click.option(
            "--currency", default="USD", show_default=True, type=CURRENCY_CHOICE
        ),
        click.option(
            "--capex",
            default="amortised",
            show_default=True,
            type=click.Choice(["amortised", "expensed"]),
            help="Spread capital over its months, or count it all when it starts.",
        ),
        click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _period(session: Session, options: dict[str, Any]) -> reports.Period:
    query = _validate(
        ReportQuery,
        {
            "from": options["from_month"],
            "to": options["to_month"],
            "currency": options["currency"],
            "capex": options["capex"],
        },
    )
    return reports.report_period(session, query)


@reports_group.command("revenue")
@report_options
def report_revenue(**options: Any) -> None:
    """Revenue by month and offering."""
    with _session() as session:
        report = reports.revenue_report(session, _period(session, options))
    rows = _rows(report["rows"], ("month", "offering", "amount"))
    if not options["as_csv"]:
        rows.append(["total", "", report["total"]])
    _emit(
        ("month", "offering", f"revenue {report['currency']}"), rows, options["as_csv"]
    )


@reports_group.command("costs")
@report_options
def report_costs(**options: Any) -> None:
    """Costs by month and kind."""
    with _session() as session:
        report = reports.cost_report(
            session, _period(session, options), options["capex"]
        )
    columns = ("month", "capex", "opex", "labour", "provider", "total")
    rows = _rows(report["months"], columns)
    if not options["as_csv"]:
        by_kind = report["by_kind"]
        rows.append(
            ["total", *[by_kind[kind] for kind in columns[1:-1]], report["total"]]
        )
    _emit(columns, rows, options["as_csv"])


@reports_group.command("profit")
@report_options
def report_profit(**options: Any) -> None:
    """Profit by month, cumulative profit, and the break-even month."""
    with _session() as session:
        report = reports.profit_report(
            session, _period(session, options), options["capex"]
        )
    columns = ("month", "revenue", "costs", "profit", "cumulative_profit")
    rows = _rows(report["months"], columns)
    if options["as_csv"]:
        _emit(columns, rows, True)
        return
    totals = report["totals"]
    rows.append(["total", totals["revenue"], totals["costs"], totals["profit"], ""])
    click.echo(f"Profit in {report['currency']}, capital expenditure {report['capex']}")
    click.echo(render_table(columns, rows))
    click.echo("")
    click.echo(
        render_table(
            ("year", "revenue", "costs", "profit"),
            _rows(report["years"], ("year", "revenue", "costs", "profit")),
        )
    )
    click.echo("")
    click.echo(report["break_even"]["message"])


@reports_group.command("recompute")
@click.option("--from", "from_month", default=None, help="First month.")
@click.option("--to", "to_month", default=None, help="Last month.")
@click.option("--currency", default="USD", show_default=True, type=CURRENCY_CHOICE)
def report_recompute(
    from_month: str | None, to_month: str | None, currency: str
) -> None:
    """Forget the stored revenue of ended months; the next report sums them again."""
    query = _validate(
        ReportQuery, {"from": from_month, "to": to_month, "currency": currency}
    )
    with _session(write=True) as session:
        period = reports.report_period(session, query)
        count = reports.forget_closed_months(
            session, currency, period.first, period.last
        )
    click.echo(
        f"forgot {count} stored {currency} months from {period.first} to "
        f"{period.last}; the next report sums them from the ledger"
    )


@reports_group.command("statement")
@click.argument("tenant_name")
@click.argument("month")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead.")
def report_statement(tenant_name: str, month: str, as_csv: bool) -> None:
    """Tenant TENANT_NAME's ledger entries of MONTH (YYYY-MM) and totals."""
    from rentgate.accounting.months import is_month

    if not is_month(month):
        raise click.BadParameter(f"{month!r} is not YYYY-MM", param_hint="MONTH")
    with _session() as session:
        tenant = tenants.find_tenant(session, tenant_name)
        document = statements.statement(session, tenant, month)
    if as_csv:
        click.echo(statements.statement_csv(document), nl=False)
        return
    columns = ("id", "booked_at", "lease_id", "offering", "kind", "amount", "currency")
    click.echo(f"Statement of {tenant_name} for {month}")
    click.echo(render_table(columns, _rows(document["entries"], columns)))
    for total in document["totals"]:
        click.echo(
            f"{total['currency']}: charges {total['charges']}, extensions "
            f"{total['extensions']}, refunds {total['refunds']}, total {total['total']}"
        )


# Ledger.


@click.group()
def ledger() -> None:
    """Check the ledger."""


@ledger.command("verify")
@click.option("--batch", default=2000, show_default=True, help="Leases per batch.")
def ledger_verify(batch: int) -> None:
    """Check every entry against its lease and the reports; exit 1 on a mismatch."""
    from rentgate.accounting.verify import verify_ledger

    def progress(done: int, total: int) -> None:
        click.echo(f"checked {done} of {total} leases", err=True)

    with _session() as session:
        result = verify_ledger(session, progress=progress, batch=batch)
    if result.mismatch is not None:
        click.echo(f"ledger mismatch: {result.mismatch}", err=True)
        sys.exit(1)
    totals = ", ".join(
        f"{money(amount, currency)} {currency}"
        for currency, amount in sorted(result.totals.items())
    )
    click.echo(
        f"ledger verified: {result.entries} entries of {result.leases} leases, "
        f"totals {totals or 'none'}"
    )
