"""Lease listing and lookup, scoped to the caller's tenant."""

from __future__ import annotations

from tests.conftest import Seeded


def rent(client, seeded: Seeded, quantity: int = 1, headers=None) -> dict:
    response = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": quantity},
        headers=headers or seeded.headers,
    )
    assert response.status_code == 201
    return response.get_json()["lease"]


def test_get_lease_returns_own_lease(client, seeded):
    lease = rent(client, seeded)

    response = client.get(f"/leases/{lease['id']}", headers=seeded.headers)

    assert response.status_code == 200
    assert response.get_json() == lease


def test_other_tenant_gets_404(client, seeded):
    lease = rent(client, seeded)

    response = client.get(f"/leases/{lease['id']}", headers=seeded.other_headers)

    assert response.status_code == 404
    assert lease["id"] in response.get_json()["detail"]


def test_list_is_newest_first_and_paginated(client, seeded):
    ids = [rent(client, seeded, quantity=q)["id"] for q in (1, 2, 3)]
    rent(client, seeded, headers=seeded.other_headers)

    first = client.get("/leases?per_page=2", headers=seeded.headers).get_json()
    second = client.get("/leases?per_page=2&page=2", headers=seeded.headers).get_json()

    assert first["total"] == 3
    assert [item["id"] for item in first["items"]] == [ids[2], ids[1]]
    assert [item["id"] for item in second["items"]] == [ids[0]]


def test_list_filters_by_state_and_offering(client, seeded):
    rent(client, seeded)

    active = client.get("/leases?state=active&offering=compute", headers=seeded.headers)
    failed = client.get("/leases?state=failed", headers=seeded.headers)

    assert active.get_json()["total"] == 1
    assert failed.get_json()["total"] == 0


def test_list_page_size_is_clamped(client, seeded):
    response = client.get("/leases?per_page=5000", headers=seeded.headers)

    assert response.get_json()["per_page"] == 100


def test_bad_query_is_422(client, seeded):
    response = client.get("/leases?page=zero", headers=seeded.headers)

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "page"


def test_huge_page_size_is_clamped(client, seeded):
    response = client.get(
        "/leases?per_page=100000000000000000000", headers=seeded.headers
    )

    assert response.status_code == 200
    assert response.get_json()["per_page"] == 100
