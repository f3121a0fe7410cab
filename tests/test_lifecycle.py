"""Lease lifecycle after activation: release with refund, extend, expire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from rentgate.cli import main
from rentgate.leases import expire_leases
from rentgate.models import (
    CapacityPool,
    CreditPeriod,
    Lease,
    LedgerEntry,
    LocalAllocation,
    Tenant,
    utcnow,
)
from tests.conftest import Seeded


def rent(client, seeded: Seeded, **fields) -> dict:
    body = {"resource_type": "compute", "gpu_model": "a100-80gb", **fields}
    response = client.post("/rent_resource", json=body, headers=seeded.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["lease"]


def ledger(runtime, lease_id: str) -> list[tuple[str, int]]:
    with runtime.read_sessions() as session:
        rows = session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.lease_id == lease_id)
            .order_by(LedgerEntry.id)
        )
        return [(row.kind, row.amount_minor) for row in rows]


def ledger_snapshot(runtime) -> list[tuple]:
    with runtime.read_sessions() as session:
        rows = session.scalars(select(LedgerEntry).order_by(LedgerEntry.id))
        return [
            (r.id, r.lease_id, r.kind, r.amount_minor, r.currency, r.booked_at, r.note)
            for r in rows
        ]


def pool_used(runtime, name: str = "a100-80gb") -> int:
    with runtime.read_sessions() as session:
        return session.scalar(
            select(CapacityPool.used).where(CapacityPool.name == name)
        )


def credit_used(runtime, tenant_id: int) -> int:
    with runtime.read_sessions() as session:
        return session.scalar(
            select(CreditPeriod.used_minor).where(CreditPeriod.tenant_id == tenant_id)
        )


def shift_activation(runtime, lease_id: str, hours: float) -> None:
    with runtime.transaction() as session:
        lease = session.get(Lease, lease_id)
        lease.activated_at = lease.activated_at - timedelta(hours=hours)


def test_release_refunds_unused_hours(client, seeded, runtime):
    lease = rent(client, seeded, quantity=2, hours=5)  # 2 x 5 h x 2.50 = 25.00

    response = client.post(f"/leases/{lease['id']}/release", headers=seeded.headers)

    assert response.status_code == 200
    released = response.get_json()
    assert released["state"] == "released"
    assert released["ended_at"] is not None
    # One started hour is billed, four are refunded: 2 x 4 h x 2.50 = 20.00.
    assert ledger(runtime, lease["id"]) == [("charge", 2500), ("refund", -2000)]
    assert pool_used(runtime) == 0
    assert credit_used(runtime, seeded.tenant_id) == 500
    with runtime.read_sessions() as session:
        allocation = session.get(LocalAllocation, lease["id"])
    assert allocation.state == "released"


def test_release_bills_started_hours(client, seeded, runtime):
    lease = rent(client, seeded, quantity=3, hours=8)  # 3 x 8 h x 2.50 = 60.00
    shift_activation(runtime, lease["id"], 2.5)

    client.post(f"/leases/{lease['id']}/release", headers=seeded.headers)

    # 2.5 h used means 3 started hours billed and 5 refunded: 3 x 5 x 2.50.
    assert ledger(runtime, lease["id"]) == [("charge", 6000), ("refund", -3750)]


def test_release_after_full_term_refunds_nothing(client, seeded, runtime):
    lease = rent(client, seeded, quantity=1, hours=2)
    shift_activation(runtime, lease["id"], 3)

    client.post(f"/leases/{lease['id']}/release", headers=seeded.headers)

    assert ledger(runtime, lease["id"]) == [("charge", 500)]


def test_release_of_unit_price_refunds_nothing(client, seeded, runtime):
    response = client.post(
        "/rent_resource",
        json={"resource_type": "data", "quantity": 3, "dataset": "imagenet-1k"},
        headers=seeded.headers,
    )
    lease = response.get_json()["lease"]

    released = client.post(f"/leases/{lease['id']}/release", headers=seeded.headers)

    assert released.status_code == 200
    assert ledger(runtime, lease["id"]) == [("charge", 3000)]
    assert pool_used(runtime, "imagenet-1k") == 0


def test_second_release_is_422(client, seeded, runtime):
    lease = rent(client, seeded, quantity=1, hours=4)
    client.post(f"/leases/{lease['id']}/release", headers=seeded.headers)

    again = client.post(f"/leases/{lease['id']}/release", headers=seeded.headers)

    assert again.status_code == 422
    assert "is released" in again.get_json()["detail"]
    assert ledger(runtime, lease["id"]) == [("charge", 1000), ("refund", -750)]


def test_extend_charges_extension(client, seeded, runtime):
    lease = rent(client, seeded, quantity=3, hours=2)  # 3 x 2 h x 2.50 = 15.00

    response = client.post(
        f"/leases/{lease['id']}/extend", json={"hours": 4}, headers=seeded.headers
    )

    assert response.status_code == 200
    extended = response.get_json()
    assert extended["hours"] == 6
    before = lease["expires_at"]
    assert extended["expires_at"] > before
    assert ledger(runtime, lease["id"]) == [("charge", 1500), ("extension", 3000)]
    assert credit_used(runtime, seeded.tenant_id) == 4500


def test_release_after_extend_refunds_extension(client, seeded, runtime):
    lease = rent(client, seeded, quantity=3, hours=2)
    client.post(
        f"/leases/{lease['id']}/extend", json={"hours": 4}, headers=seeded.headers
    )

    client.post(f"/leases/{lease['id']}/release", headers=seeded.headers)

    # Six hours bought, one started: 3 x 5 h x 2.50 = 37.50 back.
    assert ledger(runtime, lease["id"]) == [
        ("charge", 1500),
        ("extension", 3000),
        ("refund", -3750),
    ]
    assert credit_used(runtime, seeded.tenant_id) == 750


def test_extend_per_order_price_is_422(client, seeded, runtime):
    response = client.post(
        "/custom_service",
        json={"service_type": "optimization", "requirement": "faster"},
        headers=seeded.headers,
    )
    lease_id = response.get_json()["lease"]["id"]

    extend = client.post(
        f"/leases/{lease_id}/extend", json={"hours": 1}, headers=seeded.headers
    )

    assert extend.status_code == 422
    assert "priced per order, not per unit-hour" in extend.get_json()["detail"]
    assert ledger(runtime, lease_id) == [("charge", 50000)]


def test_extend_over_credit_is_402(client, seeded, runtime):
    with runtime.transaction() as session:
        session.get(Tenant, seeded.tenant_id).credit_limit_minor = 2_000
    lease = rent(client, seeded, quantity=2, hours=2)  # 10.00 of 20.00

    extend = client.post(
        f"/leases/{lease['id']}/extend", json={"hours": 3}, headers=seeded.headers
    )

    assert extend.status_code == 402
    assert extend.get_json()["remaining"] == "10.00"
    assert extend.get_json()["detail"].startswith(
        "The extension costs 15.00 USD but only 10.00 of the credit limit"
    )
    assert ledger(runtime, lease["id"]) == [("charge", 1000)]
    assert (
        client.get(f"/leases/{lease['id']}", headers=seeded.headers).get_json()["hours"]
        == 2
    )


@pytest.mark.parametrize(
    "hours", [0, -1, "2", 8761], ids=["zero", "negative", "text", "over-a-year"]
)
def test_extend_invalid_hours_is_422(client, seeded, runtime, hours):
    lease = rent(client, seeded, quantity=1, hours=1)

    extend = client.post(
        f"/leases/{lease['id']}/extend", json={"hours": hours}, headers=seeded.headers
    )

    assert extend.status_code == 422
    assert extend.get_json()["errors"][0]["field"] == "hours"
    assert ledger(runtime, lease["id"]) == [("charge", 250)]


def expire_in_past(runtime, lease_id: str) -> None:
    with runtime.transaction() as session:
        session.execute(
            update(Lease)
            .where(Lease.id == lease_id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )


def test_expire_ends_due_leases(client, seeded, runtime):
    due = rent(client, seeded, quantity=4, hours=1)
    running = rent(client, seeded, quantity=2, hours=3)
    expire_in_past(runtime, due["id"])

    assert expire_leases(runtime) == 1
    assert expire_leases(runtime) == 0

    with runtime.read_sessions() as session:
        assert session.get(Lease, due["id"]).state == "expired"
        assert session.get(Lease, due["id"]).ended_at is not None
        assert session.get(Lease, running["id"]).state == "active"
        assert session.get(LocalAllocation, due["id"]).state == "released"
    assert pool_used(runtime) == 2
    assert ledger(runtime, due["id"]) == [("charge", 1000)]


def test_expire_command_reports_count(
    client, seeded, runtime, database_url, monkeypatch
):
    leases = [rent(client, seeded, quantity=1, hours=1) for _ in range(3)]
    for lease in leases[:2]:
        expire_in_past(runtime, lease["id"])
    monkeypatch.setenv("RENTGATE_DATABASE_URL", database_url)

    result = CliRunner().invoke(main, ["expire"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "expired 2 leases"
    assert pool_used(runtime) == 1


def test_ledger_rows_never_change(client, seeded, runtime):
    first = rent(client, seeded, quantity=2, hours=4)
    second = rent(client, seeded, quantity=1, hours=2)
    before = ledger_snapshot(runtime)

    client.post(
        f"/leases/{first['id']}/extend", json={"hours": 2}, headers=seeded.headers
    )
    client.post(f"/leases/{first['id']}/release", headers=seeded.headers)
    expire_in_past(runtime, second["id"])
    expire_leases(runtime)
    after = ledger_snapshot(runtime)

    assert after[: len(before)] == before
    assert [(row[2], row[3]) for row in after[len(before) :]] == [
        ("extension", 1000),
        ("refund", -2500),
    ]
