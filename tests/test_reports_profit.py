"""Revenue, cost and profit reports, checked against the worked example."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from rentgate.accounting.months import current_month
from rentgate.accounting.reports import last_closed_month
from rentgate.models import ClosedRevenueMonth, Lease, LedgerEntry, RevenueMonth
from rentgate.runtime import Runtime
from tests.conftest import Seeded

# Monthly revenue of the worked example, in USD minor units, by offering.
EXAMPLE_REVENUE = {
    "compute": 10_000_000,
    "data": 5_000_000,
    "platform_training": 8_000_000,
    "custom_training": 2_000_000,
}
EXAMPLE_COSTS = [
    {"kind": "capex", "amount": "10000000.00", "amortisation_months": 60},
    {"kind": "opex", "amount": "2000000.00", "per": "year"},
    {"kind": "labour", "amount": "1000000.00", "per": "year"},
]


def book(
    client,
    runtime: Runtime,
    tenant_id: int,
    offering: str,
    amount_minor: int,
    at: datetime,
    currency: str = "USD",
) -> str:
    """Insert an active lease sold for ``amount_minor`` and its charge entry.

    The client fixture checks at teardown that charges match booked amounts,
    so the charge is recorded on the client as an order response would be.
    """
    with runtime.transaction() as session:
        lease = Lease(
            tenant_id=tenant_id,
            offering=offering,
            provider="local",
            quantity=1,
            hours=None,
            unit="order",
            unit_price=Decimal(amount_minor) / 100,
            currency=currency,
            amount_minor=amount_minor,
            state="active",
            details={},
            created_at=at,
            updated_at=at,
            activated_at=at,
        )
        session.add(lease)
        session.flush()
        session.add(
            LedgerEntry(
                lease_id=lease.id,
                tenant_id=tenant_id,
                offering=offering,
                kind="charge",
                amount_minor=amount_minor,
                currency=currency,
                booked_at=at,
                note="order",
            )
        )
    client.booked[lease.id] = Decimal(amount_minor) / 100
    return lease.id


def book_worked_example(
    client, runtime: Runtime, tenant_id: int, year: int, months: int
):
    for index in range(months):
        at = datetime(year + index // 12, index % 12 + 1, 15, 12, tzinfo=UTC)
        for offering, amount in EXAMPLE_REVENUE.items():
            book(client, runtime, tenant_id, offering, amount, at)


def add_costs(client, seeded: Seeded, bodies: list[dict], start: str) -> None:
    for body in bodies:
        response = client.post(
            "/admin/costs",
            json={"currency": "USD", "start_month": start, **body},
            headers=seeded.admin_headers,
        )
        assert response.status_code == 201, response.get_json()


def get_report(client, seeded: Seeded, name: str, **query: str) -> dict:
    response = client.get(
        f"/admin/reports/{name}", query_string=query, headers=seeded.admin_headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def worked_example(client, seeded, runtime) -> Seeded:
    book_worked_example(client, runtime, seeded.tenant_id, 2025, 12)
    add_costs(client, seeded, EXAMPLE_COSTS, "2025-01")
    return seeded


def test_expensed_capex_loses_ten_million(client, worked_example):
    report = get_report(
        client,
        worked_example,
        "profit",
        capex="expensed",
        **{"from": "2025-01"},
        to="2025-12",
    )

    assert report["totals"] == {
        "revenue": "3000000.00",
        "costs": "13000000.00",
        "profit": "-10000000.00",
    }
    assert report["years"] == [
        {
            "year": "2025",
            "revenue": "3000000.00",
            "costs": "13000000.00",
            "profit": "-10000000.00",
        }
    ]
    assert report["months"][0]["costs"] == "10250000.00"
    assert report["months"][-1]["cumulative_profit"] == "-10000000.00"
    assert report["break_even"]["month"] is None
    assert report["break_even"]["status"] == "not_at_run_rate"


def test_amortised_capex_loses_two_million_a_year(client, worked_example):
    report = get_report(
        client, worked_example, "profit", **{"from": "2025-01"}, to="2025-12"
    )

    assert report["capex"] == "amortised"
    assert report["totals"] == {
        "revenue": "3000000.00",
        "costs": "5000000.00",
        "profit": "-2000000.00",
    }
    assert report["months"][0] == {
        "month": "2025-01",
        "revenue": "250000.00",
        "costs": "416666.67",
        "profit": "-166666.67",
        "cumulative_profit": "-166666.67",
    }


def test_amortised_example_never_breaks_even(client, worked_example):
    report = get_report(
        client, worked_example, "profit", **{"from": "2025-01"}, to="2025-12"
    )

    assert report["break_even"] == {
        "status": "not_at_run_rate",
        "month": None,
        "run_rate_months": 12,
        "run_rate_revenue": "250000.00",
        "run_rate_costs": "416666.67",
        "monthly_shortfall": "166666.67",
        "message": (
            "The business does not break even at the current run rate: revenue "
            "falls short of costs by 166666.67 USD a month, so the cumulative loss "
            "of 2000000.00 USD is never recovered."
        ),
    }


def test_amortisation_is_exact_over_five_years(client, seeded, runtime):
    book_worked_example(client, runtime, seeded.tenant_id, 2025, 60)
    add_costs(client, seeded, EXAMPLE_COSTS, "2025-01")

    report = get_report(client, seeded, "profit", **{"from": "2025-01"}, to="2029-12")

    assert [year["profit"] for year in report["years"]] == ["-2000000.00"] * 5
    assert report["totals"]["costs"] == "25000000.00"
    assert report["break_even"]["status"] == "not_at_run_rate"


def test_cost_report_by_kind(client, worked_example):
    report = get_report(
        client, worked_example, "costs", **{"from": "2025-01"}, to="2025-03"
    )

    assert report["months"][0] == {
        "month": "2025-01",
        "capex": "166666.67",
        "opex": "166666.67",
        "labour": "83333.33",
        "provider": "0.00",
        "total": "416666.67",
    }
    assert report["by_kind"] == {
        "capex": "500000.00",
        "opex": "500000.00",
        "labour": "250000.00",
        "provider": "0.00",
    }
    assert report["total"] == "1250000.00"


def test_cost_report_expensed_capex(client, worked_example):
    report = get_report(
        client,
        worked_example,
        "costs",
        capex="expensed",
        **{"from": "2024-12"},
        to="2025-02",
    )

    assert [month["capex"] for month in report["months"]] == [
        "0.00",
        "10000000.00",
        "0.00",
    ]
    assert report["months"][0]["total"] == "0.00"


def test_revenue_by_offering_and_month(client, worked_example):
    report = get_report(
        client, worked_example, "revenue", **{"from": "2025-02"}, to="2025-03"
    )

    assert report["by_offering"] == [
        {"offering": "compute", "amount": "200000.00"},
        {"offering": "custom_training", "amount": "40000.00"},
        {"offering": "data", "amount": "100000.00"},
        {"offering": "platform_training", "amount": "160000.00"},
    ]
    assert report["by_month"] == [
        {"month": "2025-02", "amount": "250000.00"},
        {"month": "2025-03", "amount": "250000.00"},
    ]
    assert report["rows"][0] == {
        "month": "2025-02",
        "offering": "compute",
        "amount": "100000.00",
    }
    assert len(report["rows"]) == 8
    assert report["total"] == "500000.00"


def test_revenue_months_split_at_utc_midnight(client, seeded, runtime):
    book(
        client,
        runtime,
        seeded.tenant_id,
        "data",
        100,
        datetime(2025, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
    )
    book(
        client, runtime, seeded.tenant_id, "data", 200, datetime(2025, 2, 1, tzinfo=UTC)
    )

    report = get_report(client, seeded, "revenue", **{"from": "2025-01"}, to="2025-02")

    assert report["by_month"] == [
        {"month": "2025-01", "amount": "1.00"},
        {"month": "2025-02", "amount": "2.00"},
    ]


def test_revenue_includes_refunds_and_other_currency_apart(client, seeded, runtime):
    at = datetime(2025, 5, 2, tzinfo=UTC)
    lease_id = book(client, runtime, seeded.tenant_id, "compute", 1000, at)
    book(client, runtime, seeded.tenant_id, "compute", 999, at, currency="EUR")
    with runtime.transaction() as session:
        session.add(
            LedgerEntry(
                lease_id=lease_id,
                tenant_id=seeded.tenant_id,
                offering="compute",
                kind="refund",
                amount_minor=-250,
                currency="USD",
                booked_at=at,
                note="early release, 1 h unused",
            )
        )

    usd = get_report(client, seeded, "revenue", **{"from": "2025-05"}, to="2025-05")
    eur = get_report(
        client, seeded, "revenue", currency="EUR", **{"from": "2025-05"}, to="2025-05"
    )

    assert usd["total"] == "7.50"
    assert eur["total"] == "9.99"


def test_default_range_starts_at_first_entry(client, seeded, runtime):
    book(
        client,
        runtime,
        seeded.tenant_id,
        "data",
        100,
        datetime(2025, 11, 3, tzinfo=UTC),
    )

    report = get_report(client, seeded, "revenue", to="2026-01")

    assert report["from"] == "2025-11"
    assert [row["month"] for row in report["by_month"]] == [
        "2025-11",
        "2025-12",
        "2026-01",
    ]


def test_provider_costs_reduce_profit(client, seeded, runtime):
    lease_id = book(
        client,
        runtime,
        seeded.tenant_id,
        "compute",
        10_000,
        datetime(2025, 3, 9, tzinfo=UTC),
    )
    response = client.post(
        "/admin/costs",
        json={
            "kind": "provider",
            "amount": "40.25",
            "currency": "USD",
            "lease_id": lease_id,
        },
        headers=seeded.admin_headers,
    )

    report = get_report(client, seeded, "profit", **{"from": "2025-03"}, to="2025-03")

    assert response.get_json()["start_month"] == "2025-03"
    assert report["months"][0]["costs"] == "40.25"
    assert report["months"][0]["profit"] == "59.75"
    assert report["break_even"]["status"] == "reached"
    assert report["break_even"]["month"] == "2025-03"


def test_break_even_needs_positive_run_rate(client, seeded, runtime):
    add_costs(
        client,
        seeded,
        [{"kind": "capex", "amount": "1000.00", "amortisation_months": 1}],
        "2025-01",
    )
    for month in (1, 2, 3):
        book(
            client,
            runtime,
            seeded.tenant_id,
            "data",
            10_000,
            datetime(2025, month, 5, tzinfo=UTC),
        )

    report = get_report(client, seeded, "profit", **{"from": "2025-01"}, to="2025-03")

    # -1000 + 3 x 100 = -700; the 3-month run rate is 100 - 333.33 a month.
    assert report["totals"]["profit"] == "-700.00"
    assert report["break_even"]["status"] == "not_at_run_rate"
    later = get_report(client, seeded, "profit", **{"from": "2025-02"}, to="2025-03")
    assert later["break_even"]["status"] == "reached"
    assert later["break_even"]["month"] == "2025-02"


def test_break_even_projection(client, seeded, runtime):
    capex = {"kind": "capex", "amount": "3000.00", "amortisation_months": 1}
    add_costs(client, seeded, [capex], "2025-01")
    for index in range(13):
        at = datetime(2025 + index // 12, index % 12 + 1, 5, tzinfo=UTC)
        book(client, runtime, seeded.tenant_id, "data", 15_000, at)

    report = get_report(client, seeded, "profit", **{"from": "2025-01"}, to="2026-01")

    # -3000 + 13 x 150 = -1050; the last 12 months earn 150 a month, so the
    # loss is recovered 7 months after 2026-01.
    assert report["months"][-1]["cumulative_profit"] == "-1050.00"
    assert report["break_even"]["status"] == "projected"
    assert report["break_even"]["month"] == "2026-08"
    assert report["break_even"]["monthly_shortfall"] == "0.00"
    assert "is recovered in 2026-08" in report["break_even"]["message"]


def test_break_even_reached(client, seeded, runtime):
    add_costs(client, seeded, [{"kind": "opex", "amount": "50.00"}], "2025-01")
    capex = {"kind": "capex", "amount": "300.00", "amortisation_months": 1}
    add_costs(client, seeded, [capex], "2025-01")
    for month in (1, 2, 3, 4):
        at = datetime(2025, month, 5, tzinfo=UTC)
        book(client, runtime, seeded.tenant_id, "data", 15_000, at)

    report = get_report(client, seeded, "profit", **{"from": "2025-01"}, to="2025-04")

    # Cumulative profit: -200, -100, 0, 100.
    assert [month["cumulative_profit"] for month in report["months"]] == [
        "-200.00",
        "-100.00",
        "0.00",
        "100.00",
    ]
    assert report["break_even"]["status"] == "reached"
    assert report["break_even"]["month"] == "2025-03"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param({"from": "2025-13"}, "from", id="bad-month"),
        pytest.param({"from": "2025-05", "to": "2025-04"}, "from", id="reversed"),
        pytest.param({"from": "0001-01", "to": "2025-04"}, "from", id="too-long"),
        pytest.param({"capex": "later"}, "capex", id="capex"),
        pytest.param({"currency": "BTC"}, "currency", id="currency"),
        pytest.param({"colour": "red"}, "colour", id="unknown"),
    ],
)
def test_bad_report_query_is_422(client, seeded, query, field):
    response = client.get(
        "/admin/reports/profit", query_string=query, headers=seeded.admin_headers
    )

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == field


def test_closed_months_are_stored_once(client, seeded, runtime):
    book(
        client, runtime, seeded.tenant_id, "data", 100, datetime(2025, 3, 9, tzinfo=UTC)
    )

    first = get_report(client, seeded, "revenue", **{"from": "2025-02"}, to="2025-03")
    with runtime.transaction() as session:
        session.execute(
            update(RevenueMonth).values(amount_minor=RevenueMonth.amount_minor + 1)
        )
    second = get_report(client, seeded, "revenue", **{"from": "2025-02"}, to="2025-03")

    assert first["total"] == "1.00"
    # The second report reads the stored month, so the edit shows through.
    assert second["total"] == "1.01"
    with runtime.read_sessions() as session:
        closed = session.scalars(select(ClosedRevenueMonth.month)).all()
    assert sorted(closed) == ["2025-02", "2025-03"]


def test_current_month_is_summed_live(client, seeded):
    month = current_month()
    order = {"resource_type": "compute", "quantity": 1}
    client.post("/rent_resource", json=order, headers=seeded.headers)
    before = get_report(client, seeded, "revenue", **{"from": month}, to=month)

    client.post("/rent_resource", json=order, headers=seeded.headers)
    after = get_report(client, seeded, "revenue", **{"from": month}, to=month)

    assert before["total"] == "2.50"
    assert after["total"] == "5.00"


def test_last_closed_month_leaves_margin():
    just_after = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    later = datetime(2026, 3, 1, 1, 0, 1, tzinfo=UTC)

    assert last_closed_month(just_after) == "2026-01"
    assert last_closed_month(later) == "2026-02"
