"""The three order routes: minimal bodies, responses and booking."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rentgate.models import CapacityPool, Lease, LedgerEntry, Price
from tests.conftest import Seeded

MINIMAL_ORDERS = [
    pytest.param(
        "/rent_resource",
        {"resource_type": "compute", "quantity": 100},
        "compute",
        "250.00",
        id="compute",
    ),
    pytest.param(
        "/rent_resource",
        {"resource_type": "data", "quantity": 1},
        "data",
        "10.00",
        id="data",
    ),
    pytest.param(
        "/platform_service",
        {"service_type": "training", "duration": 2},
        "platform_training",
        "8.00",
        id="platform-training",
    ),
    pytest.param(
        "/platform_service",
        {"service_type": "inference", "duration": 1},
        "platform_inference",
        "1.20",
        id="platform-inference",
    ),
    pytest.param(
        "/custom_service",
        {"service_type": "optimization", "requirement": "cut p99 latency"},
        "custom_optimization",
        "500.00",
        id="custom-optimization",
    ),
    pytest.param(
        "/custom_service",
        {"service_type": "training", "requirement": "fine-tune on my data"},
        "custom_training",
        "1500.00",
        id="custom-training",
    ),
]


@pytest.mark.parametrize(("route", "body", "offering", "amount"), MINIMAL_ORDERS)
def test_minimal_order_succeeds(
    client, seeded: Seeded, runtime, route, body, offering, amount
):
    response = client.post(route, json=body, headers=seeded.headers)

    assert response.status_code == 201
    answer = response.get_json()
    assert answer["status"] == "success"
    lease = answer["lease"]
    assert answer["resource_id"] == lease["resource_id"]
    assert lease["offering"] == offering
    assert lease["state"] == "active"
    assert lease["amount"] == amount
    assert lease["currency"] == "USD"
    assert lease["created_at"] and lease["activated_at"]
    assert response.headers["Location"] == f"/leases/{lease['id']}"

    with runtime.read_sessions() as session:
        entries = session.scalars(
            select(LedgerEntry).where(LedgerEntry.lease_id == lease["id"])
        ).all()
    assert [(e.kind, e.amount_minor) for e in entries] == [
        ("charge", int(Decimal(amount) * 100))
    ]


def test_compute_order_reserves_pool(client, seeded: Seeded, runtime):
    body = {
        "resource_type": "compute",
        "quantity": 8,
        "gpu_model": "a100-80gb",
        "hours": 3,
    }

    response = client.post("/rent_resource", json=body, headers=seeded.headers)

    assert response.status_code == 201
    lease = response.get_json()["lease"]
    assert lease["pool"] == "a100-80gb"
    assert lease["amount"] == "60.00"  # 8 units x 3 hours x 2.50
    with runtime.read_sessions() as session:
        pool = session.scalars(
            select(CapacityPool).where(CapacityPool.name == "a100-80gb")
        ).one()
    assert pool.used == 8


def test_order_over_capacity_is_409(client, seeded: Seeded, runtime):
    body = {"resource_type": "compute", "quantity": 65, "gpu_model": "h100-80gb"}

    response = client.post("/rent_resource", json=body, headers=seeded.headers)

    assert response.status_code == 409
    problem = response.get_json()
    assert problem["pool"] == "h100-80gb"
    assert problem["free"] == 64
    assert "h100-80gb" in problem["detail"]
    with runtime.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Lease)) == 0


def test_unknown_pool_names_field(client, seeded: Seeded):
    body = {"resource_type": "compute", "quantity": 1, "gpu_model": "tpu-v9"}

    response = client.post("/rent_resource", json=body, headers=seeded.headers)

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "gpu_model"


def test_order_without_price_books_nothing(client, seeded: Seeded, runtime):
    with runtime.transaction() as session:
        session.query(Price).filter(Price.offering == "data").delete()

    response = client.post(
        "/rent_resource",
        json={"resource_type": "data", "quantity": 1},
        headers=seeded.headers,
    )

    assert response.status_code == 422
    assert "No price is configured for offering 'data'" in response.get_json()["detail"]
    with runtime.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Lease)) == 0
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


def test_credit_limit_rejects_order(client, seeded: Seeded, runtime):
    from rentgate.models import Tenant

    with runtime.transaction() as session:
        session.get(Tenant, seeded.tenant_id).credit_limit_minor = 30_000  # 300.00

    first = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 100},
        headers=seeded.headers,
    )
    second = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 100},
        headers=seeded.headers,
    )

    assert first.status_code == 201
    assert second.status_code == 402
    assert second.get_json()["remaining"] == "50.00"


def test_price_change_keeps_sold_price(client, seeded: Seeded, runtime):
    first = client.post(
        "/rent_resource",
        json={"resource_type": "data", "quantity": 2},
        headers=seeded.headers,
    )
    with runtime.transaction() as session:
        session.add(
            Price(
                offering="data",
                unit="unit",
                unit_price=Decimal("12.345"),
                currency="USD",
            )
        )

    second = client.post(
        "/rent_resource",
        json={"resource_type": "data", "quantity": 2},
        headers=seeded.headers,
    )
    lease_id = first.get_json()["lease"]["id"]
    again = client.get(f"/leases/{lease_id}", headers=seeded.headers).get_json()

    assert again["amount"] == "20.00"
    assert again["unit_price"] == "10.00"
    assert second.get_json()["lease"]["amount"] == "24.69"  # 24.690 rounded half-even
    assert second.get_json()["lease"]["unit_price"] == "12.345"


def test_negative_credit_limit_is_402(client, seeded: Seeded, runtime):
    from rentgate.models import Tenant

    with runtime.transaction() as session:
        session.get(Tenant, seeded.tenant_id).credit_limit_minor = -500

    response = client.post(
        "/rent_resource",
        json={"resource_type": "data", "quantity": 1},
        headers=seeded.headers,
    )

    assert response.status_code == 402
    assert response.get_json()["remaining"] == "0.00"


def test_order_amount_too_large_is_422(client, seeded: Seeded, runtime):
    with runtime.transaction() as session:
        session.add(
            Price(
                offering="compute",
                unit="unit_hour",
                unit_price=Decimal("99999999999999.99999999"),
                currency="USD",
            )
        )

    response = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 1000, "hours": 8760},
        headers=seeded.headers,
    )

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "quantity"
    with runtime.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Lease)) == 0
