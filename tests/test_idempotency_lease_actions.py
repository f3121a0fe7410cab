"""Idempotency-Key on lease release and extend, at the service layer."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from rentgate.errors import PaymentRequired, Unprocessable
from rentgate.leases import extend_lease, release_lease
from rentgate.models import IdempotencyKey, LedgerEntry, Tenant
from rentgate.ordering import Outcome, lease_action_once
from tests.conftest import Seeded


def rent(client, seeded: Seeded) -> str:
    response = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 2, "hours": 4},
        headers=seeded.headers,
    )
    assert response.status_code == 201
    return response.get_json()["lease"]["id"]


def extend_once(runtime, seeded: Seeded, lease_id: str, hours: int, key) -> Outcome:
    return lease_action_once(
        runtime,
        tenant_id=seeded.tenant_id,
        route="extend",
        lease_id=lease_id,
        payload={"hours": hours},
        idempotency_key=key,
        action=lambda claim: extend_lease(
            runtime, seeded.tenant_id, lease_id, hours, claim=claim
        ),
    )


def release_once(runtime, seeded: Seeded, lease_id: str, key) -> Outcome:
    return lease_action_once(
        runtime,
        tenant_id=seeded.tenant_id,
        route="release",
        lease_id=lease_id,
        payload={},
        idempotency_key=key,
        action=lambda claim: release_lease(
            runtime, seeded.tenant_id, lease_id, claim=claim
        ),
    )


def ledger(runtime, lease_id: str) -> list[tuple[str, int]]:
    with runtime.read_sessions() as session:
        rows = session.execute(
            select(LedgerEntry.kind, LedgerEntry.amount_minor)
            .where(LedgerEntry.lease_id == lease_id)
            .order_by(LedgerEntry.id)
        ).all()
    return [tuple(row) for row in rows]


def claims(runtime) -> int:
    with runtime.read_sessions() as session:
        return session.scalar(select(func.count()).select_from(IdempotencyKey))


def test_extend_replayed_charges_once(client, seeded, runtime):
    lease_id = rent(client, seeded)

    first = extend_once(runtime, seeded, lease_id, 3, "ext-1")
    second = extend_once(runtime, seeded, lease_id, 3, "ext-1")

    assert first.status == second.status == 200
    assert first.replayed is False
    assert second.replayed is True
    assert second.body == first.body
    assert second.body["hours"] == 7
    assert ledger(runtime, lease_id) == [("charge", 2000), ("extension", 1500)]


def test_extend_other_body_is_422(client, seeded, runtime):
    lease_id = rent(client, seeded)
    extend_once(runtime, seeded, lease_id, 3, "ext-2")

    with pytest.raises(Unprocessable, match="different body"):
        extend_once(runtime, seeded, lease_id, 5, "ext-2")

    assert ledger(runtime, lease_id) == [("charge", 2000), ("extension", 1500)]


def test_rejected_extend_stores_nothing(client, seeded, runtime):
    with runtime.transaction() as session:
        session.get(Tenant, seeded.tenant_id).credit_limit_minor = 2_500
    lease_id = rent(client, seeded)

    with pytest.raises(PaymentRequired):
        extend_once(runtime, seeded, lease_id, 3, "ext-3")

    assert claims(runtime) == 0


def test_release_replayed_not_422(client, seeded, runtime):
    lease_id = rent(client, seeded)

    first = release_once(runtime, seeded, lease_id, "rel-1")
    second = release_once(runtime, seeded, lease_id, "rel-1")

    assert second.status == 200
    assert second.replayed is True
    assert second.body == first.body
    assert second.body["state"] == "released"
    assert ledger(runtime, lease_id) == [("charge", 2000), ("refund", -1500)]


def test_without_key_nothing_stored(client, seeded, runtime):
    lease_id = rent(client, seeded)

    outcome = extend_once(runtime, seeded, lease_id, 1, None)

    assert outcome.status == 200
    assert claims(runtime) == 0


def test_concurrent_same_key_extends_once(app, seeded, runtime):
    lease_id = rent(app.test_client(), seeded)
    barrier = threading.Barrier(6)
    outcomes: list[Outcome] = []

    def send() -> None:
        barrier.wait(timeout=10)
        outcomes.append(extend_once(runtime, seeded, lease_id, 2, "ext-race"))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(outcomes) == 6
    assert {outcome.status for outcome in outcomes} == {200}
    assert sum(not outcome.replayed for outcome in outcomes) == 1
    assert {outcome.body["hours"] for outcome in outcomes} == {6}
    assert ledger(runtime, lease_id) == [("charge", 2000), ("extension", 1000)]
