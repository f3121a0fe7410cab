"""Admin routes: tenants, keys, prices, pools and costs, for admin keys only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from rentgate.admission import current_period
from rentgate.models import CapacityPool, CreditPeriod, Lease
from tests.conftest import Seeded

ADMIN_ROUTES = [
    ("get", "/admin/tenants"),
    ("post", "/admin/tenants"),
    ("put", "/admin/tenants/1/credit-limit"),
    ("post", "/admin/keys"),
    ("get", "/admin/keys"),
    ("post", "/admin/keys/1/revoke"),
    ("post", "/admin/prices"),
    ("get", "/admin/prices"),
    ("post", "/admin/pools"),
    ("get", "/admin/pools"),
    ("patch", "/admin/pools/1"),
    ("post", "/admin/costs"),
    ("get", "/admin/costs"),
    ("get", "/admin/reports/revenue"),
    ("get", "/admin/reports/costs"),
    ("get", "/admin/reports/profit"),
    ("get", "/admin/tenants/1/statements/2026-01"),
    ("get", "/admin/tenants/1/statements/2026-01/csv"),
]


def rent(client, headers, quantity: int = 1, hours: int = 1) -> dict:
    response = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": quantity, "hours": hours},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["lease"]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_tenant_key_gets_403(client, seeded: Seeded, method, path):
    response = getattr(client, method)(path, json={}, headers=seeded.headers)

    assert response.status_code == 403
    assert response.get_json()["detail"] == "This route needs an admin API key."


def test_missing_key_gets_401(client, seeded):
    response = client.get("/admin/tenants")

    assert response.status_code == 401


def test_create_tenant_returns_it(client, seeded):
    response = client.post(
        "/admin/tenants",
        json={"name": "acme", "credit_limit": "2500.50", "currency": "EUR"},
        headers=seeded.admin_headers,
    )

    body = response.get_json()
    assert response.status_code == 201
    assert body["name"] == "acme"
    assert body["credit_limit"] == "2500.50"
    assert body["currency"] == "EUR"


def test_create_duplicate_tenant_is_409(client, seeded):
    response = client.post(
        "/admin/tenants", json={"name": "demo"}, headers=seeded.admin_headers
    )

    assert response.status_code == 409
    assert "Tenant 'demo' already exists" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"name": "x", "credit_limit": 10.5}, "credit_limit", id="float"),
        pytest.param(
            {"name": "x", "credit_limit": "1.005"}, "credit_limit", id="cents"
        ),
        pytest.param({"name": "x", "colour": "red"}, "colour", id="unknown-field"),
        pytest.param({"name": ""}, "name", id="empty-name"),
        pytest.param({"name": "x", "currency": "XXX"}, "currency", id="currency"),
    ],
)
def test_create_tenant_rejects_bad_body(client, seeded, body, field):
    response = client.post("/admin/tenants", json=body, headers=seeded.admin_headers)

    problem = response.get_json()
    assert response.status_code == 422
    assert problem["errors"][0]["field"] == field
    assert f"'{field}'" in problem["detail"]


def test_list_tenants(client, seeded):
    response = client.get("/admin/tenants", headers=seeded.admin_headers)

    items = response.get_json()["items"]
    assert [item["name"] for item in items] == ["demo", "other"]
    assert items[0]["credit_limit"] == "100000.00"
    assert items[1]["credit_limit"] is None


def test_credit_limit_change_updates_this_month(client, seeded, runtime):
    rent(client, seeded.headers, quantity=4)  # 4 x 1 h x 2.50 = 10.00

    response = client.put(
        f"/admin/tenants/{seeded.tenant_id}/credit-limit",
        json={"credit_limit": "12.00"},
        headers=seeded.admin_headers,
    )

    assert response.status_code == 200
    assert response.get_json()["credit_limit"] == "12.00"
    with runtime.read_sessions() as session:
        row = session.scalars(
            select(CreditPeriod).where(CreditPeriod.period == current_period())
        ).one()
    assert row.limit_minor == 1200
    assert row.used_minor == 1000
    credit = client.get("/credit", headers=seeded.headers).get_json()
    assert credit["remaining"] == "2.00"
    refused = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 1},
        headers=seeded.headers,
    )
    assert refused.status_code == 402


def test_credit_limit_below_used_is_409(client, seeded):
    rent(client, seeded.headers, quantity=4)

    response = client.put(
        f"/admin/tenants/{seeded.tenant_id}/credit-limit",
        json={"credit_limit": "9.99"},
        headers=seeded.admin_headers,
    )

    problem = response.get_json()
    assert response.status_code == 409
    assert "already used 10.00 USD" in problem["detail"]
    assert "at least 10.00" in problem["detail"]
    assert [error["field"] for error in problem["errors"]] == ["credit_limit"]
    assert problem["errors"][0]["type"] == "limit_below_used"


def test_credit_limit_for_new_tenant_creates_period(client, seeded, runtime):
    response = client.put(
        f"/admin/tenants/{seeded.other_tenant_id}/credit-limit",
        json={"credit_limit": "3.00"},
        headers=seeded.admin_headers,
    )
    rent(client, seeded.other_headers, quantity=1)
    refused = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 1},
        headers=seeded.other_headers,
    )

    assert response.status_code == 200
    assert refused.status_code == 402
    credit = client.get("/credit", headers=seeded.other_headers).get_json()
    assert credit == {
        "period": current_period(),
        "currency": "USD",
        "limit": "3.00",
        "used": "2.50",
        "remaining": "0.50",
    }


def test_removing_credit_limit_allows_orders(client, seeded):
    client.put(
        f"/admin/tenants/{seeded.tenant_id}/credit-limit",
        json={"credit_limit": "0.00"},
        headers=seeded.admin_headers,
    )
    refused = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 1},
        headers=seeded.headers,
    )

    response = client.put(
        f"/admin/tenants/{seeded.tenant_id}/credit-limit",
        json={"credit_limit": None},
        headers=seeded.admin_headers,
    )

    assert refused.status_code == 402
    assert response.get_json()["credit_limit"] is None
    rent(client, seeded.headers)
    assert client.get("/credit", headers=seeded.headers).get_json()["limit"] is None


def test_credit_limit_of_unknown_tenant_is_404(client, seeded):
    response = client.put(
        "/admin/tenants/999/credit-limit",
        json={"credit_limit": "1.00"},
        headers=seeded.admin_headers,
    )

    assert response.status_code == 404
    assert "Tenant 999 not found" in response.get_json()["detail"]


def test_created_key_works_once_shown(client, seeded):
    response = client.post(
        "/admin/keys",
        json={"tenant_id": seeded.other_tenant_id, "label": "ci"},
        headers=seeded.admin_headers,
    )
    created = response.get_json()
    listed = client.get("/admin/keys", headers=seeded.admin_headers).get_json()

    assert response.status_code == 201
    assert created["key"].startswith(f"rg_{created['prefix']}_")
    assert created["label"] == "ci"
    assert all("key" not in item for item in listed["items"])
    assert created["id"] in [item["id"] for item in listed["items"]]
    rent(client, {"Authorization": f"Bearer {created['key']}"})


def test_revoked_key_is_401_at_once(client, seeded):
    created = client.post(
        "/admin/keys",
        json={"tenant_id": seeded.tenant_id},
        headers=seeded.admin_headers,
    ).get_json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/credit", headers=headers).status_code == 200

    response = client.post(
        f"/admin/keys/{created['id']}/revoke", headers=seeded.admin_headers
    )

    assert response.status_code == 200
    assert response.get_json()["revoked_at"] is not None
    assert client.get("/credit", headers=headers).status_code == 401


def test_revoke_key_by_prefix(client, seeded):
    created = client.post(
        "/admin/keys",
        json={"tenant_id": seeded.tenant_id},
        headers=seeded.admin_headers,
    ).get_json()
    headers = {"Authorization": f"Bearer {created['key']}"}

    response = client.post(
        f"/admin/keys/{created['prefix']}/revoke", headers=seeded.admin_headers
    )

    assert response.status_code == 200
    assert response.get_json()["id"] == created["id"]
    assert response.get_json()["revoked_at"] is not None
    assert client.get("/credit", headers=headers).status_code == 401
    assert client.get("/credit", headers=seeded.headers).status_code == 200


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param("0123456789ab", id="unknown-prefix"),
        pytest.param("999", id="unknown-id"),
        pytest.param("99999999999", id="id-above-integer-range"),
        pytest.param("%C2%B2", id="superscript-two"),
        pytest.param("not-a-key", id="word"),
    ],
)
def test_revoke_unknown_key_is_404(client, seeded, reference):
    response = client.post(
        f"/admin/keys/{reference}/revoke", headers=seeded.admin_headers
    )

    assert response.status_code == 404
    assert "give its id or prefix" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"role": "tenant"}, "tenant_id", id="tenant-without-id"),
        pytest.param(
            {"role": "admin", "tenant_id": 1}, "tenant_id", id="admin-with-id"
        ),
        pytest.param({"role": "root"}, "role", id="unknown-role"),
    ],
)
def test_create_key_rejects_bad_body(client, seeded, body, field):
    response = client.post("/admin/keys", json=body, headers=seeded.admin_headers)

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == field


def test_key_for_unknown_tenant_is_404(client, seeded):
    response = client.post(
        "/admin/keys", json={"tenant_id": 999}, headers=seeded.admin_headers
    )

    assert response.status_code == 404


def test_price_change_applies_to_new_orders_only(client, seeded, runtime):
    before = rent(client, seeded.headers, quantity=2, hours=3)

    response = client.post(
        "/admin/prices",
        json={
            "offering": "compute",
            "unit": "unit_hour",
            "unit_price": "3.125",
            "currency": "USD",
        },
        headers=seeded.admin_headers,
    )
    after = rent(client, seeded.headers, quantity=2, hours=3)

    assert response.status_code == 201
    assert response.get_json()["current"] is True
    assert before["unit_price"] == "2.50"
    assert before["amount"] == "15.00"
    assert after["unit_price"] == "3.125"
    assert after["amount"] == "18.75"
    with runtime.read_sessions() as session:
        old = session.get(Lease, before["id"])
    assert old.unit_price == Decimal("2.50")
    assert old.amount_minor == 1500


def test_price_list_marks_current(client, seeded):
    client.post(
        "/admin/prices",
        json={
            "offering": "data",
            "unit": "unit",
            "unit_price": "12",
            "currency": "USD",
        },
        headers=seeded.admin_headers,
    )

    response = client.get("/admin/prices?offering=data", headers=seeded.admin_headers)

    items = response.get_json()["items"]
    assert [(item["unit_price"], item["current"]) for item in items] == [
        ("12.00", True),
        ("10.00", False),
    ]


def test_graduated_price_bands_the_units(client, seeded):
    response = client.post(
        "/admin/prices",
        json={
            "offering": "compute",
            "unit": "unit_hour",
            "currency": "USD",
            "tiers": [
                {"up_to": 100, "unit_price": "2.50"},
                {"up_to": 300, "unit_price": "2.00"},
                {"up_to": None, "unit_price": "1.50"},
            ],
        },
        headers=seeded.admin_headers,
    )
    lease = rent(client, seeded.other_headers, quantity=350, hours=2)

    assert response.status_code == 201
    assert response.get_json()["tiers"][2] == {"up_to": None, "unit_price": "1.50"}
    # (100 x 2.50 + 200 x 2.00 + 50 x 1.50) x 2 h = 725.00 x 2
    assert lease["amount"] == "1450.00"
    assert lease["unit_price"] == "2.07142857"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param(
            {"unit": "unit", "tiers": [{"up_to": 5, "unit_price": "1"}] * 2},
            "tiers",
            "only the last band may, and must, have up_to null",
            id="no-open-band",
        ),
        pytest.param(
            {
                "unit": "unit",
                "tiers": [
                    {"up_to": 5, "unit_price": "1"},
                    {"up_to": 5, "unit_price": "1"},
                    {"up_to": None, "unit_price": "1"},
                ],
            },
            "tiers",
            "do not strictly increase",
            id="not-increasing",
        ),
        pytest.param(
            {
                "unit": "order",
                "tiers": [
                    {"up_to": 5, "unit_price": "1"},
                    {"up_to": None, "unit_price": "1"},
                ],
            },
            "tiers",
            "a price per order has no quantity to band",
            id="per-order",
        ),
        pytest.param(
            {"unit": "unit"},
            "unit_price",
            "exactly one of unit_price and tiers",
            id="neither",
        ),
        pytest.param(
            {"unit": "unit", "unit_price": "-1"},
            "unit_price",
            "should match pattern",
            id="negative",
        ),
    ],
)
def test_bad_price_is_422(client, seeded, body, field, message):
    payload = {"offering": "compute", "currency": "USD", **body}

    response = client.post("/admin/prices", json=payload, headers=seeded.admin_headers)

    problem = response.get_json()
    assert response.status_code == 422
    assert problem["errors"][0]["field"] == field
    assert message in problem["detail"]


def test_create_and_list_pool(client, seeded):
    response = client.post(
        "/admin/pools",
        json={"offering": "compute", "name": "l40s", "capacity": 8},
        headers=seeded.admin_headers,
    )
    listed = client.get("/admin/pools", headers=seeded.admin_headers).get_json()

    assert response.status_code == 201
    assert response.get_json()["free"] == 8
    assert ("compute", "l40s", 8) in [
        (item["offering"], item["name"], item["capacity"]) for item in listed["items"]
    ]


def test_new_default_pool_replaces_old(client, seeded, runtime):
    client.post(
        "/admin/pools",
        json={"offering": "compute", "name": "l40s", "capacity": 8, "is_default": True},
        headers=seeded.admin_headers,
    )

    lease = rent(client, seeded.headers)

    assert lease["pool"] == "l40s"
    with runtime.read_sessions() as session:
        defaults = session.scalars(
            select(CapacityPool.name).where(
                CapacityPool.offering == "compute", CapacityPool.is_default
            )
        ).all()
    assert defaults == ["l40s"]


def test_duplicate_pool_is_409(client, seeded):
    response = client.post(
        "/admin/pools",
        json={"offering": "compute", "name": "standard", "capacity": 8},
        headers=seeded.admin_headers,
    )

    assert response.status_code == 409


def test_resize_pool(client, seeded, runtime):
    rent(client, seeded.headers, quantity=10)
    with runtime.read_sessions() as session:
        pool = session.scalars(
            select(CapacityPool).where(CapacityPool.name == "standard")
        ).one()

    too_small = client.patch(
        f"/admin/pools/{pool.id}", json={"capacity": 9}, headers=seeded.admin_headers
    )
    exact = client.patch(
        f"/admin/pools/{pool.id}", json={"capacity": 10}, headers=seeded.admin_headers
    )

    problem = too_small.get_json()
    assert too_small.status_code == 409
    assert "10 units in use" in problem["detail"]
    assert [error["field"] for error in problem["errors"]] == ["capacity"]
    assert problem["errors"][0]["type"] == "capacity_below_used"
    assert problem["used"] == 10
    assert exact.status_code == 200
    assert exact.get_json()["free"] == 0
    full = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 1},
        headers=seeded.headers,
    )
    assert full.status_code == 409


def pool_ids(client, headers) -> dict[str, int]:
    items = client.get("/admin/pools", headers=headers).get_json()["items"]
    return {item["name"]: item["id"] for item in items}


def default_pools(client, headers) -> dict[str, str]:
    items = client.get("/admin/pools", headers=headers).get_json()["items"]
    return {item["offering"]: item["name"] for item in items if item["is_default"]}


def test_default_pool_switches_back(client, seeded):
    created = client.post(
        "/admin/pools",
        json={"offering": "compute", "name": "l40s", "capacity": 8, "is_default": True},
        headers=seeded.admin_headers,
    )
    too_big = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 100},
        headers=seeded.headers,
    )
    standard_id = pool_ids(client, seeded.admin_headers)["standard"]

    response = client.patch(
        f"/admin/pools/{standard_id}",
        json={"is_default": True},
        headers=seeded.admin_headers,
    )

    assert created.status_code == 201
    assert too_big.status_code == 409
    assert too_big.get_json()["pool"] == "l40s"
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["is_default"] is True
    assert response.get_json()["capacity"] == 512
    assert default_pools(client, seeded.admin_headers) == {
        "compute": "standard",
        "data": "common-crawl-sample",
        "platform_training": "training-slots",
        "platform_inference": "inference-slots",
    }
    lease = rent(client, seeded.headers, quantity=100)
    assert lease["pool"] == "standard"


def test_default_pool_set_twice_stays_single(client, seeded):
    ids = pool_ids(client, seeded.admin_headers)

    for name in ("a100-80gb", "a100-80gb", "h100-80gb"):
        response = client.patch(
            f"/admin/pools/{ids[name]}",
            json={"is_default": True},
            headers=seeded.admin_headers,
        )
        assert response.status_code == 200, response.get_json()

    assert default_pools(client, seeded.admin_headers)["compute"] == "h100-80gb"
    assert rent(client, seeded.headers)["pool"] == "h100-80gb"


def test_pool_patch_is_one_transaction(client, seeded):
    client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 4, "gpu_model": "a100-80gb"},
        headers=seeded.headers,
    )
    a100_id = pool_ids(client, seeded.admin_headers)["a100-80gb"]

    too_small = client.patch(
        f"/admin/pools/{a100_id}",
        json={"capacity": 3, "is_default": True},
        headers=seeded.admin_headers,
    )
    defaults_after_409 = default_pools(client, seeded.admin_headers)
    exact = client.patch(
        f"/admin/pools/{a100_id}",
        json={"capacity": 4, "is_default": True},
        headers=seeded.admin_headers,
    )

    assert too_small.status_code == 409
    assert too_small.get_json()["errors"][0]["field"] == "capacity"
    assert defaults_after_409["compute"] == "standard"
    assert exact.status_code == 200, exact.get_json()
    assert exact.get_json()["capacity"] == 4
    assert exact.get_json()["free"] == 0
    assert exact.get_json()["is_default"] is True
    assert default_pools(client, seeded.admin_headers)["compute"] == "a100-80gb"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({}, "body", id="empty"),
        pytest.param({"is_default": False}, "is_default", id="default-false"),
        pytest.param({"is_default": "yes"}, "is_default", id="default-string"),
        pytest.param({"capacity": None}, "body", id="capacity-null"),
        pytest.param({"capacity": -1}, "capacity", id="capacity-negative"),
        pytest.param({"capacity": 8, "name": "x"}, "name", id="unknown-field"),
    ],
)
def test_bad_pool_patch_is_422(client, seeded, body, field):
    standard_id = pool_ids(client, seeded.admin_headers)["standard"]

    response = client.patch(
        f"/admin/pools/{standard_id}", json=body, headers=seeded.admin_headers
    )

    problem = response.get_json()
    assert response.status_code == 422
    assert problem["errors"][0]["field"] == field
    assert default_pools(client, seeded.admin_headers)["compute"] == "standard"


def test_resize_unknown_pool_is_404(client, seeded):
    response = client.patch(
        "/admin/pools/999", json={"capacity": 1}, headers=seeded.admin_headers
    )

    assert response.status_code == 404


def test_add_each_kind_of_cost(client, seeded):
    lease = rent(client, seeded.headers)
    bodies = [
        {"kind": "capex", "amount": "10000000", "amortisation_months": 60},
        {"kind": "opex", "amount": "2000000.00", "per": "year"},
        {
            "kind": "labour",
            "amount": "83333.33",
            "per": "month",
            "end_month": "2026-12",
        },
    ]
    for body in bodies:
        response = client.post(
            "/admin/costs",
            json={"currency": "USD", "start_month": "2026-01", **body},
            headers=seeded.admin_headers,
        )
        assert response.status_code == 201, response.get_json()
    provider = client.post(
        "/admin/costs",
        json={
            "kind": "provider",
            "amount": "1.10",
            "currency": "USD",
            "lease_id": lease["id"],
        },
        headers=seeded.admin_headers,
    )

    listed = client.get("/admin/costs", headers=seeded.admin_headers).get_json()
    assert provider.status_code == 201
    assert provider.get_json()["start_month"] == lease["activated_at"][:7]
    assert [
        (item["kind"], item["amount"], item["per"]) for item in listed["items"]
    ] == [
        ("capex", "10000000.00", None),
        ("opex", "2000000.00", "year"),
        ("labour", "83333.33", "month"),
        ("provider", "1.10", None),
    ]
    only = client.get("/admin/costs?kind=labour", headers=seeded.admin_headers)
    assert len(only.get_json()["items"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"kind": "capex"}, "amortisation_months", id="capex-no-months"),
        pytest.param(
            {"kind": "opex", "amortisation_months": 12},
            "amortisation_months",
            id="opex-months",
        ),
        pytest.param({"kind": "provider"}, "lease_id", id="provider-no-lease"),
        pytest.param(
            {"kind": "capex", "amortisation_months": 0},
            "amortisation_months",
            id="zero",
        ),
        pytest.param({"kind": "opex", "per": "week"}, "per", id="per-week"),
        pytest.param(
            {"kind": "opex", "start_month": "2026-13"}, "start_month", id="month"
        ),
        pytest.param(
            {"kind": "opex", "end_month": "2025-12"}, "end_month", id="end-early"
        ),
        pytest.param({"kind": "opex", "amount": 5}, "amount", id="number"),
    ],
)
def test_bad_cost_is_422(client, seeded, body, field):
    payload = {"amount": "5.00", "currency": "USD", "start_month": "2026-01", **body}

    response = client.post("/admin/costs", json=payload, headers=seeded.admin_headers)

    problem = response.get_json()
    assert response.status_code == 422
    assert problem["errors"][0]["field"] == field
    assert f"'{field}'" in problem["detail"]


def test_provider_cost_of_unknown_lease_is_404(client, seeded):
    response = client.post(
        "/admin/costs",
        json={"kind": "provider", "amount": "1", "currency": "USD", "lease_id": "nope"},
        headers=seeded.admin_headers,
    )

    assert response.status_code == 404
    assert "Lease 'nope' not found" in response.get_json()["detail"]
