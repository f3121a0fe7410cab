"""Time the revenue, profit and statement reports over a large ledger.

Builds a scratch database with ROWS leases and one charge entry each, spread
over 24 months, 6 offerings and 1,000 tenants. Then runs each report several
times and prints a Markdown table of the first run and of the median and
maximum of the later runs. The first revenue run also sums and stores the months that
have ended, so it is the cost of a report over a cold ledger. PostgreSQL gets
its own database, created next to --postgres-url and dropped at the end;
SQLite uses a file in a temporary folder.

    .venv/bin/python bench/reports_bench.py --backend both --rows 1000000

This is a benchmark, not a test: it asserts nothing beyond the reports'
totals matching the rows it inserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rentgate.accounting import reports, statements
from rentgate.accounting.schemas import ReportQuery
from rentgate.config import Settings
from rentgate.migrations import upgrade
from rentgate.models import Tenant
from rentgate.runtime import Runtime

OFFERINGS = (
    "compute",
    "data",
    "platform_training",
    "platform_inference",
    "custom_optimization",
    "custom_training",
)
TENANTS = 1000
HOURS = 24 * 730  # entries are spread hourly over 2025-01 to 2026-12
FIRST_MONTH, LAST_MONTH = "2025-01", "2026-12"
STATEMENT_MONTH = "2025-06"
SQLITE_BATCH = 50_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill_postgres(url: str, rows: int) -> None:
    """Insert tenants, leases, entries and costs with INSERT ... SELECT."""
    engine = create_engine(url)
    offerings = ", ".join(f"'{name}'" for name in OFFERINGS)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tenants (id, name, credit_currency, created_at) "
                "SELECT g, 'tenant-' || g, 'USD', now() "
                "FROM generate_series(1, :tenants) AS g"
            ),
            {"tenants": TENANTS},
        )
        log("tenants inserted")
        connection.execute(
            text(
                "INSERT INTO leases (id, tenant_id, offering, provider, quantity, "
                "unit, unit_price, currency, amount_minor, state, details, "
                "created_at, updated_at, activated_at) "
                "SELECT '00000000-0000-4000-8000-' || lpad(g::text, 12, '0'), "
                "1 + g % :tenants, "
                f"(ARRAY[{offerings}])[1 + g % 6], 'local', 1, 'order', "
                "(100 + g % 10000) / 100.0, 'USD', 100 + g % 10000, 'active', "
                "'{}', ts, ts, ts "
                "FROM (SELECT g, timestamptz '2025-01-01 00:30:00+00' "
                "+ (g % :hours) * interval '1 hour' AS ts "
                "FROM generate_series(1, :rows) AS g) AS series"
            ),
            {"tenants": TENANTS, "hours": HOURS, "rows": rows},
        )
        log(f"{rows} leases inserted")
        connection.execute(
            text(
                "INSERT INTO ledger_entries (lease_id, tenant_id, offering, kind, "
                "amount_minor, currency, booked_at, note) "
                "SELECT id, tenant_id, offering, 'charge', amount_minor, currency, "
                "activated_at, 'order' FROM leases"
            )
        )
        log(f"{rows} ledger entries inserted")
        add_costs(connection)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    log("vacuumed and analysed")
    engine.dispose()


def fill_sqlite(url: str, rows: int) -> None:
    """Insert tenants, leases, entries and costs with executemany in batches."""
    engine = create_engine(url)
    start = datetime(2025, 1, 1, 0, 30, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tenants (id, name, credit_currency, created_at) "
                "VALUES (:id, :name, 'USD', :created_at)"
            ),
            [
                {"id": i, "name": f"tenant-{i}", "created_at": start}
                for i in range(1, TENANTS + 1)
            ],
        )
    lease_sql = text(
        "INSERT INTO leases (id, tenant_id, offering, provider, quantity, unit, "
        "unit_price, currency, amount_minor, state, details, created_at, "
        "updated_at, activated_at) VALUES (:id, :tenant_id, :offering, 'local', 1, "
        "'order', :unit_price, 'USD', :amount, 'active', '{}', :at, :at, :at)"
    )
    entry_sql = text(
        "INSERT INTO ledger_entries (lease_id, tenant_id, offering, kind, "
        "amount_minor, currency, booked_at, note) VALUES (:id, :tenant_id, "
        ":offering, 'charge', :amount, 'USD', :at, 'order')"
    )
    for low in range(1, rows + 1, SQLITE_BATCH):
        batch = []
        for g in range(low, min(rows, low + SQLITE_BATCH - 1) + 1):
            amount = 100 + g % 10000
            at = start + timedelta(hours=g % HOURS)
            batch.append(
                {
                    "id": f"00000000-0000-4000-8000-{g:012d}",
                    "tenant_id": 1 + g % TENANTS,
                    "offering": OFFERINGS[g % 6],
                    "unit_price": f"{amount / 100:.2f}",
                    "amount": amount,
                    # SQLite stores timestamps as text in this format.
                    "at": at.strftime("%Y-%m-%d %H:%M:%S.%f"),
                }
            )
        with engine.begin() as connection:
            connection.execute(lease_sql, batch)
            connection.execute(entry_sql, batch)
        log(f"{min(rows, low + SQLITE_BATCH - 1)} of {rows} rows inserted")
    with engine.begin() as connection:
        add_costs(connection)
        connection.execute(text("ANALYZE"))
    engine.dispose()


def add_costs(connection: Any) -> None:
    """Add the worked example's costs so the profit report has work to do."""
    rows = [
        ("capex", 1_000_000_000, 60, None),
        ("opex", 200_000_000, None, 12),
        ("labour", 100_000_000, None, 12),
    ]
    for kind, amount, months, period in rows:
        connection.execute(
            text(
                "INSERT INTO costs (kind, amount_minor, currency, start_month, "
                "amortisation_months, period_months, note, created_at) VALUES "
                "(:kind, :amount, 'USD', :start, :months, :period, '', :now)"
            ),
            {
                "kind": kind,
                "amount": amount,
                "start": FIRST_MONTH,
                "months": months,
                "period": period,
                "now": datetime.now(UTC),
            },
        )


def expected_total(rows: int) -> int:
    return sum(100 + g % 10000 for g in range(1, rows + 1))


def time_call(call: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    timings = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        timings.append((time.perf_counter() - started) * 1000)
    return timings, result


def measure(url: str, rows: int, runs: int) -> list[tuple[str, list[float]]]:
    """Run each report ``runs`` times through the same code the API uses.

    Each run gets a new read session, as each API request does.
    """
    runtime = Runtime.build(Settings(_env_file=None, env="test", database_url=url))
    query = ReportQuery.model_validate({"from": FIRST_MONTH, "to": LAST_MONTH})

    def revenue() -> dict[str, Any]:
        with runtime.read_sessions() as session:
            period = reports.report_period(session, query)
            return reports.revenue_report(session, period)

    def profit() -> dict[str, Any]:
        with runtime.read_sessions() as session:
            period = reports.report_period(session, query)
            return reports.profit_report(session, period, "amortised")

    def statement() -> dict[str, Any]:
        with runtime.read_sessions() as session:
            tenant = session.get(Tenant, 1)
            assert tenant is not None
            return statements.statement(session, tenant, STATEMENT_MONTH)

    results = []
    try:
        revenue_timings, revenue_report = time_call(revenue, runs)
        total = int(revenue_report["total"].replace(".", ""))
        if total != expected_total(rows):
            raise SystemExit(f"revenue total {total} != inserted rows' sum")
        results.append(("revenue by month and offering", revenue_timings))
        results.append(("profit and break-even", time_call(profit, runs)[0]))
        statement_timings, document = time_call(statement, runs)
        name = f"statement, one tenant-month ({len(document['entries'])} entries)"
        results.append((name, statement_timings))
    finally:
        runtime.close()
    return results


def run_postgres(base_url: str, rows: int, runs: int) -> list[tuple[str, list[float]]]:
    base = make_url(base_url)
    name = f"rentgate_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        started = time.perf_counter()
        fill_postgres(url, rows)
        log(f"postgres filled in {time.perf_counter() - started:.1f} s")
        return measure(url, rows, runs)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_sqlite(rows: int, runs: int) -> list[tuple[str, list[float]]]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        started = time.perf_counter()
        fill_sqlite(url, rows)
        log(f"sqlite filled in {time.perf_counter() - started:.1f} s")
        return measure(url, rows, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", choices=["postgres", "sqlite", "both"], default="both"
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="ledger entries")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per query")
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="server to create the scratch database on",
    )
    args = parser.parse_args()

    table = []
    if args.backend in ("postgres", "both"):
        for query, timings in run_postgres(args.postgres_url, args.rows, args.runs):
            table.append(("PostgreSQL", query, timings))
    if args.backend in ("sqlite", "both"):
        for query, timings in run_sqlite(args.rows, args.runs):
            table.append(("SQLite", query, timings))

    print(f"{args.rows:,} ledger entries, {args.runs} runs per query\n")
    print("| backend | query | first run ms | median ms | max ms |")
    print("| --- | --- | ---: | ---: | ---: |")
    for backend, query, timings in table:
        later = timings[1:] or timings
        print(
            f"| {backend} | {query} | {timings[0]:.1f} | "
            f"{statistics.median(later):.1f} | {max(later):.1f} |"
        )


if __name__ == "__main__":
    main()
