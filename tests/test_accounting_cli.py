"""The operator's CLI commands and ``rentgate ledger verify``."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from rentgate.admission import current_period
from rentgate.cli import main
from rentgate.models import ApiKey, Lease, LedgerEntry, RevenueMonth
from tests.test_reports_profit import EXAMPLE_REVENUE, book, book_worked_example


@pytest.fixture
def cli(database_url):
    """Run ``rentgate`` against the test database; returns the click result."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(
            main, list(args), env={"RENTGATE_DATABASE_URL": database_url}
        )

    return run


def test_prices_set_and_list(cli, seeded):
    result = cli(
        "prices",
        "set",
        "compute",
        "--unit",
        "unit_hour",
        "--tier",
        "100=2.50",
        "--tier",
        "rest=2.00",
    )
    listed = cli("prices", "list", "--offering", "compute")

    assert result.exit_code == 0, result.output
    assert "applies to new orders from now on" in result.stdout
    lines = listed.stdout.splitlines()
    assert "100=2.50 rest=2.00" in lines[2]
    assert lines[2].rstrip().endswith("current")
    assert not lines[3].rstrip().endswith("current")


def test_prices_set_rejects_bad_tier(cli, seeded):
    result = cli("prices", "set", "compute", "--unit", "unit", "--tier", "lots=1")

    assert result.exit_code == 2
    assert "is not UP_TO=PRICE" in result.output


def test_prices_set_rejects_float_style_amount(cli, seeded):
    result = cli("prices", "set", "compute", "--unit", "unit", "--price", "1e3")

    assert result.exit_code == 1
    assert "Field 'unit_price' is invalid" in result.output


def test_tenants_list_and_credit_limit(cli, seeded):
    changed = cli("tenants", "set-credit-limit", "other", "250.00")
    listed = cli("tenants", "list")
    unknown = cli("tenants", "set-credit-limit", "nobody", "1")

    assert changed.exit_code == 0, changed.output
    assert "credit limit 250.00 USD a month" in changed.stdout
    assert " 2  other        250.00  USD" in listed.stdout
    assert unknown.exit_code == 1
    assert "Tenant 'nobody' not found" in unknown.output


def test_keys_list_and_revoke(cli, seeded, runtime, client):
    prefix = seeded.other_key.split("_")[1]

    listed = cli("keys", "list", "--tenant", "other")
    revoked = cli("keys", "revoke", prefix)

    assert prefix in listed.stdout
    assert seeded.other_key not in listed.stdout
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/credit", headers=seeded.other_headers).status_code == 401
    with runtime.read_sessions() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one()
    assert row.revoked_at is not None


def test_pools_create_list_resize(cli, seeded):
    created = cli("pools", "create", "compute", "l40s", "8", "--default")
    resized = cli("pools", "resize", "9", "4")
    listed = cli("pools", "list")
    missing = cli("pools", "resize", "999", "4")

    assert created.exit_code == 0, created.output
    assert "pool 9 compute/l40s created with 8 units" in created.stdout
    assert resized.exit_code == 0, resized.output
    assert "l40s                        4     0     4  True" in listed.stdout
    assert missing.exit_code == 1
    assert "Capacity pool 999 not found" in missing.output


def test_pools_set_default_and_back(cli, client, seeded):
    created = cli("pools", "create", "compute", "l40s", "8", "--default")
    too_big = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 100},
        headers=seeded.headers,
    )

    restored = cli("pools", "set-default", "1")
    missing = cli("pools", "set-default", "999")
    listed = cli("pools", "list")

    assert created.exit_code == 0, created.output
    assert too_big.status_code == 409
    assert restored.exit_code == 0, restored.output
    assert "pool 1 compute/standard is now the default of compute" in restored.stdout
    assert missing.exit_code == 1
    assert "Capacity pool 999 not found" in missing.output
    assert "standard                  512     0   512  True" in listed.stdout
    assert "l40s                        8     0     8  False" in listed.stdout
    lease = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 100},
        headers=seeded.headers,
    ).get_json()["lease"]
    assert lease["pool"] == "standard"


def test_pools_resize_below_used_fails(cli, client, seeded):
    client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 10},
        headers=seeded.headers,
    )

    result = cli("pools", "resize", "1", "9")

    assert result.exit_code == 1
    assert "has 10 units in use, more than the new capacity 9" in result.output


def test_keys_revoke_by_id(cli, client, seeded, runtime):
    with runtime.read_sessions() as session:
        key_id = session.scalars(
            select(ApiKey.id).where(ApiKey.prefix == seeded.other_key.split("_")[1])
        ).one()

    revoked = cli("keys", "revoke", str(key_id))
    unknown = cli("keys", "revoke", "99999999999")

    assert revoked.exit_code == 0, revoked.output
    assert client.get("/credit", headers=seeded.other_headers).status_code == 401
    assert unknown.exit_code == 1
    assert "API key '99999999999' not found" in unknown.output


def test_costs_add_and_list(cli, seeded):
    added = cli(
        "costs",
        "add",
        "capex",
        "10000000",
        "--start-month",
        "2025-01",
        "--amortisation-months",
        "60",
    )
    missing = cli("costs", "add", "capex", "5", "--start-month", "2025-01")
    listed = cli("costs", "list")

    assert added.exit_code == 0, added.output
    assert "cost 1 recorded: capex 10000000.00 USD from 2025-01" in added.stdout
    assert missing.exit_code == 1
    assert "Field 'amortisation_months' is invalid" in missing.output
    assert "10000000.00" in listed.stdout


def add_example_costs(cli) -> None:
    for args in (
        ("capex", "10000000", "--amortisation-months", "60"),
        ("opex", "2000000", "--per", "year"),
        ("labour", "1000000", "--per", "year"),
    ):
        result = cli("costs", "add", *args, "--start-month", "2025-01")
        assert result.exit_code == 0, result.output


def test_profit_report_table_states_no_break_even(cli, client, seeded, runtime):
    book_worked_example(client, runtime, seeded.tenant_id, 2025, 12)
    add_example_costs(cli)

    result = cli("reports", "profit", "--from", "2025-01", "--to", "2025-12")

    assert result.exit_code == 0, result.output
    assert "total    3000000.00  5000000.00  -2000000.00" in result.stdout
    assert "2025  3000000.00  5000000.00  -2000000.00" in result.stdout
    assert (
        "does not break even at the current run rate: revenue falls short of "
        "costs by 166666.67 USD a month" in result.stdout
    )


def test_profit_report_csv_expensed(cli, client, seeded, runtime):
    book_worked_example(client, runtime, seeded.tenant_id, 2025, 12)
    add_example_costs(cli)

    result = cli(
        "reports",
        "profit",
        "--from",
        "2025-01",
        "--to",
        "2025-12",
        "--capex",
        "expensed",
        "--csv",
    )

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert result.exit_code == 0, result.output
    assert len(rows) == 12
    assert rows[0]["costs"] == "10250000.00"
    assert rows[-1]["cumulative_profit"] == "-10000000.00"


def test_revenue_and_cost_reports_csv(cli, client, seeded, runtime):
    book_worked_example(client, runtime, seeded.tenant_id, 2025, 1)
    add_example_costs(cli)

    revenue = cli("reports", "revenue", "--from", "2025-01", "--to", "2025-01", "--csv")
    costs = cli("reports", "costs", "--from", "2025-01", "--to", "2025-01", "--csv")

    revenue_rows = list(csv.reader(io.StringIO(revenue.stdout)))
    assert revenue_rows[0] == ["month", "offering", "revenue USD"]
    assert sorted(row[1] for row in revenue_rows[1:]) == sorted(EXAMPLE_REVENUE)
    assert costs.stdout.splitlines()[1] == (
        "2025-01,166666.67,166666.67,83333.33,0.00,416666.67"
    )


def test_statement_csv(cli, client, seeded, runtime):
    book(
        client,
        runtime,
        seeded.tenant_id,
        "data",
        1234,
        datetime(2025, 4, 2, tzinfo=UTC),
    )

    result = cli("reports", "statement", "demo", "2025-04", "--csv")
    table = cli("reports", "statement", "demo", "2025-04")

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(row["kind"], row["amount"]) for row in rows] == [
        ("charge", "12.34"),
        ("total", "12.34"),
    ]
    assert "USD: charges 12.34, extensions 0.00, refunds 0.00, total 12.34" in (
        table.stdout
    )


def rent_extend_release(client, seeded) -> str:
    lease = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 3, "hours": 4},
        headers=seeded.headers,
    ).get_json()["lease"]
    client.post(
        f"/leases/{lease['id']}/extend", json={"hours": 5}, headers=seeded.headers
    )
    client.post(f"/leases/{lease['id']}/release", headers=seeded.headers)
    return lease["id"]


def test_ledger_verify_passes(cli, client, seeded):
    rent_extend_release(client, seeded)
    client.post(
        "/custom_service",
        json={"service_type": "optimization", "requirement": "x"},
        headers=seeded.headers,
    )

    result = cli("ledger", "verify", "--batch", "1")

    # 30.00 + 37.50 - 60.00 (8 of 9 hours unused) + 500.00
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "ledger verified: 4 entries of 2 leases, totals 507.50 USD\n"
    )
    assert "checked 1 of 2 leases" in result.stderr
    assert "checked 2 of 2 leases" in result.stderr


def test_ledger_verify_names_wrong_charge(cli, client, seeded, runtime):
    lease_id = rent_extend_release(client, seeded)
    with runtime.transaction() as session:
        session.execute(
            update(Lease).where(Lease.id == lease_id).values(amount_minor=2999)
        )

    result = cli("ledger", "verify")

    assert result.exit_code == 1
    assert (
        f"ledger mismatch: lease '{lease_id}' was sold for 29.99 USD but its charge "
        "entry 1 books 30.00" in result.stderr
    )


def test_ledger_verify_names_wrong_extension(cli, client, seeded, runtime):
    lease_id = rent_extend_release(client, seeded)
    with runtime.transaction() as session:
        session.add(
            LedgerEntry(
                lease_id=lease_id,
                tenant_id=seeded.tenant_id,
                offering="compute",
                kind="extension",
                amount_minor=100,
                currency="USD",
                note="extended by 1 h",
            )
        )

    result = cli("ledger", "verify")

    # 3 units x 1 h x 2.50 = 7.50, not 1.00.
    assert result.exit_code == 1
    assert (
        f"lease '{lease_id}' extension entry 4 books 1.00 but the lease's price "
        "for the hours in its note is 7.50" in result.stderr
    )


def test_ledger_verify_names_entry_of_failed_lease(cli, client, seeded, runtime):
    lease_id = rent_extend_release(client, seeded)
    with runtime.transaction() as session:
        session.execute(
            update(Lease).where(Lease.id == lease_id).values(state="failed")
        )

    result = cli("ledger", "verify")

    assert result.exit_code == 1
    assert f"lease '{lease_id}' is failed but has ledger entry 1" in result.stderr


def test_ledger_verify_names_tenant_mismatch(cli, client, seeded, runtime):
    lease_id = rent_extend_release(client, seeded)
    with runtime.transaction() as session:
        session.execute(
            update(LedgerEntry)
            .where(LedgerEntry.kind == "refund")
            .values(tenant_id=seeded.other_tenant_id)
        )

    result = cli("ledger", "verify")

    assert result.exit_code == 1
    assert (
        f"ledger entry 3 differs from its lease '{lease_id}' in tenant, offering "
        "or currency" in result.stderr
    )


def test_credit_period_follows_cli_limit(cli, client, seeded):
    client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 2},
        headers=seeded.headers,
    )

    lowered = cli("tenants", "set-credit-limit", "demo", "4.99")
    exact = cli("tenants", "set-credit-limit", "demo", "5.00")

    assert lowered.exit_code == 1
    assert f"already used 5.00 USD of credit in {current_period()}" in lowered.output
    assert exact.exit_code == 0, exact.output
    assert (
        client.get("/credit", headers=seeded.headers).get_json()["remaining"] == "0.00"
    )


def test_ledger_verify_names_stale_stored_month(cli, client, seeded, runtime):
    at = datetime(2025, 4, 2, tzinfo=UTC)
    book(client, runtime, seeded.tenant_id, "data", 1234, at)
    assert (
        cli("reports", "revenue", "--from", "2025-04", "--to", "2025-04").exit_code == 0
    )
    with runtime.transaction() as session:
        session.execute(update(RevenueMonth).values(amount_minor=1000))

    result = cli("ledger", "verify")

    assert result.exit_code == 1
    assert (
        "USD: the revenue report totals 1000 minor units but the ledger sums to 1234"
        in result.stderr
    )


def test_reports_recompute_fixes_stale_month(cli, client, seeded, runtime):
    at = datetime(2025, 4, 2, tzinfo=UTC)
    book(client, runtime, seeded.tenant_id, "data", 1234, at)
    cli("reports", "revenue", "--from", "2025-04", "--to", "2025-04")
    with runtime.transaction() as session:
        session.execute(update(RevenueMonth).values(amount_minor=1000))

    recomputed = cli("reports", "recompute", "--from", "2025-01", "--to", "2025-12")
    verified = cli("ledger", "verify")

    assert recomputed.exit_code == 0, recomputed.output
    assert "forgot 1 stored USD months from 2025-01 to 2025-12" in recomputed.stdout
    assert verified.exit_code == 0, verified.output
    assert "totals 12.34 USD" in verified.stdout
