"""Orders without an Idempotency-Key: the one-statement steps on PostgreSQL and
the fallback to the transaction path, which SQLite always takes.

Every rejection must leave pools, credit, leases and the ledger as they were,
and a price set after an order must apply to the next one, although the
PostgreSQL path quotes from a cache.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from rentgate.auth import hash_key
from rentgate.models import (
    ApiKey,
    CapacityPool,
    CreditPeriod,
    Lease,
    LedgerEntry,
    Price,
    Tenant,
    utcnow,
)
from tests.conftest import Seeded

COMPUTE = {"resource_type": "compute", "quantity": 1, "hours": 1}


def add_price(runtime, offering: str, unit_price: str, valid_from=None) -> None:
    with runtime.transaction() as session:
        session.add(
            Price(
                offering=offering,
                unit="unit_hour",
                unit_price=Decimal(unit_price),
                currency="USD",
                valid_from=valid_from or utcnow(),
            )
        )


def books(runtime) -> dict[str, Any]:
    """Return what an order can change: pool use, credit use, leases, entries."""
    with runtime.read_sessions() as session:
        return {
            "pools": {
                name: used
                for name, used in session.execute(
                    select(CapacityPool.name, CapacityPool.used)
                )
            },
            "credit": session.scalar(
                select(func.coalesce(func.sum(CreditPeriod.used_minor), 0))
            ),
            "leases": session.scalar(select(func.count()).select_from(Lease)),
            "entries": session.scalar(select(func.count()).select_from(LedgerEntry)),
        }


def test_new_price_applies_to_next_order(client, seeded: Seeded, runtime):
    first = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)
    add_price(runtime, "compute", "3.00")
    second = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)

    assert first.status_code == 201
    assert first.get_json()["lease"]["amount"] == "2.50"
    assert second.status_code == 201
    assert second.get_json()["lease"]["amount"] == "3.00"
    assert second.get_json()["lease"]["unit_price"] == "3.00"


def test_price_that_becomes_valid_applies(client, seeded: Seeded, runtime):
    add_price(runtime, "compute", "4.00", valid_from=utcnow() + timedelta(seconds=1))
    before = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)
    time.sleep(1.1)
    after = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)

    assert before.get_json()["lease"]["amount"] == "2.50"
    assert after.status_code == 201
    assert after.get_json()["lease"]["amount"] == "4.00"


def test_order_takes_units_and_credit_once(client, seeded: Seeded, runtime):
    body = {"resource_type": "compute", "quantity": 3, "gpu_model": "h100-80gb"}
    response = client.post("/rent_resource", json=body, headers=seeded.headers)

    assert response.status_code == 201
    lease = response.get_json()["lease"]
    assert lease["pool"] == "h100-80gb"
    assert lease["details"]["gpu_model"] == "h100-80gb"
    assert lease["amount"] == "7.50"
    state = books(runtime)
    assert state["pools"]["h100-80gb"] == 3
    assert state["pools"]["standard"] == 0
    assert state["credit"] == 750
    with runtime.read_sessions() as session:
        stored = session.get(Lease, lease["id"])
        entries = session.scalars(select(LedgerEntry)).all()
    assert stored is not None
    assert stored.state == "active"
    assert stored.details["pool"] == "h100-80gb"
    assert stored.credit_period == utcnow().strftime("%Y-%m")
    assert [(e.kind, e.amount_minor) for e in entries] == [("charge", 750)]


def test_default_pool_named_in_lease(client, seeded: Seeded, runtime):
    response = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)

    assert response.status_code == 201
    assert response.get_json()["lease"]["pool"] == "standard"
    assert books(runtime)["pools"]["standard"] == 1


def test_unpooled_order_has_no_pool(client, seeded: Seeded, runtime):
    body = {"service_type": "optimization", "requirement": "cut p99 latency"}
    response = client.post("/custom_service", json=body, headers=seeded.headers)

    assert response.status_code == 201
    lease = response.get_json()["lease"]
    assert lease["pool"] is None
    with runtime.read_sessions() as session:
        stored = session.get(Lease, lease["id"])
    assert stored is not None
    assert stored.pool_id is None
    assert books(runtime)["credit"] == 50_000


def test_tenant_without_limit_books_no_credit(client, seeded: Seeded, runtime):
    response = client.post("/rent_resource", json=COMPUTE, headers=seeded.other_headers)

    assert response.status_code == 201
    with runtime.read_sessions() as session:
        stored = session.get(Lease, response.get_json()["lease"]["id"])
    assert stored is not None
    assert stored.credit_period is None
    assert books(runtime)["credit"] == 0


def fill_h100(runtime) -> None:
    with runtime.transaction() as session:
        session.execute(
            update(CapacityPool)
            .where(CapacityPool.name == "h100-80gb")
            .values(capacity=2)
        )


def euro_limit(runtime) -> None:
    with runtime.transaction() as session:
        session.execute(update(Tenant).values(credit_currency="EUR"))


REJECTIONS = [
    pytest.param(
        fill_h100,
        {"resource_type": "compute", "quantity": 3, "gpu_model": "h100-80gb"},
        409,
        "Capacity pool 'h100-80gb' of offering 'compute' has 2 of 2 units free",
        id="pool-full",
    ),
    pytest.param(
        None,
        {"resource_type": "compute", "quantity": 64, "hours": 1000},
        402,
        "The order costs 160000.00 USD but only 100000.00",
        id="credit-exceeded",
    ),
    pytest.param(
        None,
        {"resource_type": "compute", "quantity": 1, "gpu_model": "tpu-v9"},
        422,
        "No capacity pool named 'tpu-v9' for offering 'compute'",
        id="unknown-pool",
    ),
    pytest.param(
        euro_limit,
        COMPUTE,
        422,
        "The order is priced in USD but the tenant's credit limit is in EUR",
        id="currency-mismatch",
    ),
]


@pytest.mark.parametrize(("prepare", "body", "status", "detail"), REJECTIONS)
def test_rejected_order_changes_nothing(
    client, seeded: Seeded, runtime, prepare, body, status, detail
):
    if prepare is not None:
        prepare(runtime)
    before = books(runtime)

    response = client.post("/rent_resource", json=body, headers=seeded.headers)

    assert response.status_code == status
    assert response.get_json()["detail"].startswith(detail)
    assert books(runtime) == before


def test_order_returns_its_connection(client, seeded: Seeded, runtime):
    response = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)

    assert response.status_code == 201
    assert runtime.engine.pool.checkedout() == 0


def revoke_demo_key(runtime, seeded: Seeded) -> None:
    with runtime.transaction() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.key_hash == hash_key(seeded.key))
            .values(revoked_at=utcnow())
        )


def drop_prices(runtime, _seeded: Seeded) -> None:
    with runtime.transaction() as session:
        session.execute(delete(Price))


BAD_KEY = "rg_0123456789ab_not-a-real-key"

KEY_FAILURES = [
    pytest.param(None, BAD_KEY, COMPUTE, 401, id="unknown-key"),
    pytest.param(None, "not-shaped-like-a-key", COMPUTE, 401, id="malformed-key"),
    pytest.param(revoke_demo_key, None, COMPUTE, 401, id="revoked-key"),
    pytest.param(None, "admin", COMPUTE, 403, id="admin-key"),
    pytest.param(None, BAD_KEY, {"resource_type": "gpu"}, 401, id="bad-body"),
    pytest.param(drop_prices, BAD_KEY, COMPUTE, 401, id="no-price"),
]


@pytest.mark.parametrize(("prepare", "key", "body", "status"), KEY_FAILURES)
def test_order_key_checked_first(
    client, seeded: Seeded, runtime, prepare, key, body, status
):
    if prepare is not None:
        prepare(runtime, seeded)
    if key is None:
        key = seeded.key
    elif key == "admin":
        key = seeded.admin_key
    before = books(runtime)

    response = client.post(
        "/rent_resource", json=body, headers={"Authorization": f"Bearer {key}"}
    )

    assert response.status_code == status
    assert response.get_json()["status"] == status
    assert books(runtime) == before


def test_bad_body_with_valid_key_is_422(client, seeded: Seeded, runtime):
    response = client.post(
        "/rent_resource", json={"resource_type": "gpu"}, headers=seeded.headers
    )

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "resource_type"


def test_order_with_claim_key_checks_tenant(client, seeded: Seeded, runtime):
    headers = {**seeded.other_headers, "Idempotency-Key": "order-1"}
    first = client.post("/rent_resource", json=COMPUTE, headers=headers)
    again = client.post("/rent_resource", json=COMPUTE, headers=headers)

    assert first.status_code == 201
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["lease"]["id"] == first.get_json()["lease"]["id"]
    with runtime.read_sessions() as session:
        stored = session.get(Lease, first.get_json()["lease"]["id"])
    assert stored is not None
    assert stored.tenant_id == seeded.other_tenant_id


def test_rejected_price_not_kept(client, seeded: Seeded, runtime):
    add_price(runtime, "compute", "99999999999999.99999999")
    too_large = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)
    add_price(runtime, "compute", "3.00")
    after = [
        client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)
        for _ in range(3)
    ]

    assert too_large.status_code == 422
    assert too_large.get_json()["errors"][0]["type"] == "amount_too_large"
    assert [response.status_code for response in after] == [201, 201, 201]
    assert {response.get_json()["lease"]["amount"] for response in after} == {"3.00"}


class WatchedBody(io.BytesIO):
    """A request body that records whether the server read it."""

    was_read = False

    def read(self, *args: Any) -> bytes:
        self.was_read = True
        return super().read(*args)

    def readinto(self, buffer: Any) -> int:
        self.was_read = True
        return super().readinto(buffer)

    readline = read  # type: ignore[assignment]


def test_made_up_key_rejected_before_body(client, seeded: Seeded):
    body = WatchedBody(b'{"resource_type": "compute", "quantity": 1}')
    response = client.post(
        "/rent_resource",
        input_stream=body,
        headers={
            "Authorization": f"Bearer {BAD_KEY}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body.getvalue())),
        },
    )

    assert response.status_code == 401
    assert response.get_json()["detail"].startswith("Invalid or revoked API key")
    assert body.was_read is False


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "Missing API key"),
        ("Basic dXNlcjpwYXNz", "The Authorization header contains no Bearer API key"),
        ("bearer\trg_0123456789ab_secret", "The Authorization header contains no"),
    ],
    ids=["missing", "basic", "tab"],
)
def test_order_without_bearer_key_is_401(client, authorization, detail):
    headers = {"Authorization": authorization} if authorization else {}

    response = client.post("/rent_resource", json=COMPUTE, headers=headers)

    assert response.status_code == 401
    assert response.get_json()["detail"].startswith(detail)
