"""Idempotency-Key on the release and extend routes, over HTTP."""

from __future__ import annotations

from sqlalchemy import select

from rentgate.models import LedgerEntry
from tests.conftest import Seeded

ORDER = {"resource_type": "compute", "quantity": 2, "hours": 4}


def rent(client, seeded: Seeded) -> str:
    response = client.post("/rent_resource", json=ORDER, headers=seeded.headers)
    assert response.status_code == 201
    return response.get_json()["lease"]["id"]


def entries(runtime, lease_id: str) -> list[tuple[str, int]]:
    with runtime.read_sessions() as session:
        rows = session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.lease_id == lease_id)
            .order_by(LedgerEntry.id)
        ).all()
    return [(row.kind, row.amount_minor) for row in rows]


def test_extend_retry_charges_once(client, seeded: Seeded, runtime):
    lease_id = rent(client, seeded)
    headers = {**seeded.headers, "Idempotency-Key": "extend-1"}

    first = client.post(
        f"/leases/{lease_id}/extend", json={"hours": 2}, headers=headers
    )
    second = client.post(
        f"/leases/{lease_id}/extend", json={"hours": 2}, headers=headers
    )

    assert first.status_code == 200
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_json()["hours"] == 6
    assert entries(runtime, lease_id) == [("charge", 2000), ("extension", 1000)]


def test_extend_key_with_other_body_is_422(client, seeded: Seeded):
    lease_id = rent(client, seeded)
    headers = {**seeded.headers, "Idempotency-Key": "extend-2"}

    client.post(f"/leases/{lease_id}/extend", json={"hours": 2}, headers=headers)
    other = client.post(
        f"/leases/{lease_id}/extend", json={"hours": 3}, headers=headers
    )

    assert other.status_code == 422
    assert "different body" in other.get_json()["detail"]


def test_release_retry_replays(client, seeded: Seeded, runtime):
    lease_id = rent(client, seeded)
    headers = {**seeded.headers, "Idempotency-Key": "release-1"}

    first = client.post(f"/leases/{lease_id}/release", headers=headers)
    second = client.post(f"/leases/{lease_id}/release", headers=headers)

    assert first.status_code == 200
    assert first.get_json()["state"] == "released"
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert [kind for kind, _ in entries(runtime, lease_id)] == ["charge", "refund"]


def test_release_without_key_twice_is_422(client, seeded: Seeded):
    lease_id = rent(client, seeded)

    client.post(f"/leases/{lease_id}/release", headers=seeded.headers)
    again = client.post(f"/leases/{lease_id}/release", headers=seeded.headers)

    assert again.status_code == 422
    assert "released" in again.get_json()["detail"]
