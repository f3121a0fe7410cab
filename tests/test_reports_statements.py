"""Tenant statements and the tenant's credit route."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from rentgate.admission import current_period
from tests.conftest import Seeded
from tests.test_reports_profit import book


def rent_extend_release(client, seeded: Seeded) -> str:
    """Book a charge of 15.00, an extension of 10.00 and a refund of 20.00."""
    response = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 2, "hours": 3},
        headers=seeded.headers,
    )
    lease_id = response.get_json()["lease"]["id"]
    extended = client.post(
        f"/leases/{lease_id}/extend", json={"hours": 2}, headers=seeded.headers
    )
    released = client.post(f"/leases/{lease_id}/release", headers=seeded.headers)
    assert extended.status_code == 200
    assert released.status_code == 200
    return lease_id


def test_statement_lists_entries_with_totals(client, seeded):
    lease_id = rent_extend_release(client, seeded)
    client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 1},
        headers=seeded.other_headers,
    )

    response = client.get(f"/statements/{current_period()}", headers=seeded.headers)

    body = response.get_json()
    assert response.status_code == 200
    assert body["tenant"] == "demo"
    assert [(e["kind"], e["amount"], e["lease_id"]) for e in body["entries"]] == [
        ("charge", "15.00", lease_id),
        ("extension", "10.00", lease_id),
        ("refund", "-20.00", lease_id),
    ]
    assert body["totals"] == [
        {
            "currency": "USD",
            "charges": "15.00",
            "extensions": "10.00",
            "refunds": "-20.00",
            "total": "5.00",
        }
    ]


def test_statement_csv_rows_add_up(client, seeded):
    rent_extend_release(client, seeded)

    response = client.get(f"/statements/{current_period()}/csv", headers=seeded.headers)

    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert [row["kind"] for row in rows] == ["charge", "extension", "refund", "total"]
    assert [row["amount"] for row in rows] == ["15.00", "10.00", "-20.00", "5.00"]
    assert rows[0]["note"] == "order"


def test_statement_covers_only_its_month(client, seeded, runtime):
    book(
        client,
        runtime,
        seeded.tenant_id,
        "data",
        700,
        datetime(2025, 1, 31, 23, 59, tzinfo=UTC),
    )
    book(
        client, runtime, seeded.tenant_id, "data", 300, datetime(2025, 2, 1, tzinfo=UTC)
    )

    january = client.get("/statements/2025-01", headers=seeded.headers).get_json()
    march = client.get("/statements/2025-03", headers=seeded.headers).get_json()

    assert [entry["amount"] for entry in january["entries"]] == ["7.00"]
    assert january["totals"][0]["total"] == "7.00"
    assert march["entries"] == []
    assert march["totals"] == []


def test_other_tenant_sees_only_own_entries(client, seeded):
    rent_extend_release(client, seeded)

    response = client.get(
        f"/statements/{current_period()}", headers=seeded.other_headers
    )

    assert response.get_json()["entries"] == []
    assert response.get_json()["tenant"] == "other"


def test_admin_reads_any_statement(client, seeded):
    rent_extend_release(client, seeded)

    response = client.get(
        f"/admin/tenants/{seeded.tenant_id}/statements/{current_period()}",
        headers=seeded.admin_headers,
    )

    assert response.status_code == 200
    assert response.get_json()["totals"][0]["total"] == "5.00"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        pytest.param("/statements/2025-13", "month", id="month-13"),
        pytest.param("/statements/latest", "month", id="word"),
        pytest.param("/statements/2025-1/csv", "month", id="csv-month"),
    ],
)
def test_bad_statement_request_is_422(client, seeded, path, field):
    response = client.get(path, headers=seeded.headers)

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == field


def test_admin_key_on_own_statement_is_403(client, seeded):
    response = client.get("/statements/2025-01", headers=seeded.admin_headers)

    assert response.status_code == 403


def test_credit_shows_limit_used_and_remaining(client, seeded):
    rent_extend_release(client, seeded)

    response = client.get("/credit", headers=seeded.headers)

    # 15.00 + 10.00 reserved, 20.00 given back by the refund.
    assert response.status_code == 200
    assert response.get_json() == {
        "period": current_period(),
        "currency": "USD",
        "limit": "100000.00",
        "used": "5.00",
        "remaining": "99995.00",
    }


def test_credit_without_limit_is_null(client, seeded):
    response = client.get("/credit", headers=seeded.other_headers)

    assert response.get_json()["limit"] is None
    assert response.get_json()["remaining"] is None
    assert response.get_json()["used"] == "0.00"


@pytest.mark.parametrize("month", ["0000-01", "9999-12", "1999-12"])
def test_statement_month_out_of_range_is_422(client, seeded, month):
    response = client.get(f"/statements/{month}", headers=seeded.headers)

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "month"
