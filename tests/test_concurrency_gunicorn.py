"""Admission under real concurrency: two gunicorn masters on one PostgreSQL.

Orders are released together by a barrier, spread over two gateway instances
with two sync workers each, so four processes race on the same pool and
credit rows.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import Engine

from rentgate.auth import create_key
from rentgate.models import CapacityPool, CreditPeriod, Lease, LedgerEntry, Tenant
from tests.gateway_procs import (
    Gateway,
    gateway_env,
    post_all_at_once,
    running_gateways,
    scratch_database,
    seed,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

POOL = "race-pool"
CAPACITY = 10
ROUNDS = 20
ORDERS_PER_ROUND = 100


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[Gateway], Engine, str]]:
    """Two gateways with two workers each, one database, the demo key."""
    with scratch_database("rentgate_race") as url:
        key = seed(url)
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                CapacityPool.__table__.insert().values(
                    offering="compute",
                    name=POOL,
                    capacity=CAPACITY,
                    used=0,
                    is_default=False,
                )
            )
        log_dir = tmp_path_factory.mktemp("race")
        try:
            with running_gateways(
                gateway_env(url), log_dir, count=2, workers=2
            ) as gateways:
                yield gateways, engine, key
        finally:
            engine.dispose()


def reset_pool(engine: Engine) -> None:
    """End the previous round's leases and empty the pool."""
    with engine.begin() as connection:
        pool_id = connection.scalar(
            select(CapacityPool.id).where(CapacityPool.name == POOL)
        )
        connection.execute(
            update(Lease)
            .where(Lease.pool_id == pool_id, Lease.state == "active")
            .values(state="released")
        )
        connection.execute(
            update(CapacityPool).where(CapacityPool.id == pool_id).values(used=0)
        )


def test_capacity_never_oversold(cluster):
    gateways, engine, key = cluster
    headers = {"Authorization": f"Bearer {key}"}
    body = {"resource_type": "compute", "quantity": 1, "gpu_model": POOL}
    per_round: list[tuple[int, int, float]] = []

    for round_number in range(ROUNDS):
        reset_pool(engine)
        batch = [
            (gateways[index % 2].url + "/rent_resource", body, headers)
            for index in range(ORDERS_PER_ROUND)
        ]
        started = time.monotonic()
        responses = post_all_at_once(batch)
        elapsed = time.monotonic() - started

        statuses = Counter(response.status_code for response in responses)
        assert statuses == {201: CAPACITY, 409: ORDERS_PER_ROUND - CAPACITY}, (
            f"round {round_number}: {statuses}"
        )
        for response in responses:
            if response.status_code == 409:
                detail = response.json()["detail"]
                assert f"Capacity pool '{POOL}'" in detail
                assert f"has 0 of {CAPACITY} units free" in detail
        with engine.connect() as connection:
            used = connection.scalar(
                select(CapacityPool.used).where(CapacityPool.name == POOL)
            )
            active = connection.scalar(
                select(func.count())
                .select_from(Lease)
                .join(CapacityPool, Lease.pool_id == CapacityPool.id)
                .where(CapacityPool.name == POOL, Lease.state == "active")
            )
        assert used == CAPACITY
        assert active == CAPACITY
        per_round.append((statuses[201], statuses[409], elapsed))

    with engine.connect() as connection:
        charges = connection.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.kind == "charge")
        )
    assert charges == ROUNDS * CAPACITY
    print(
        f"{ROUNDS} rounds x {ORDERS_PER_ROUND} orders: 201/409 per round "
        f"{sorted({(ok, full) for ok, full, _ in per_round})}, slowest round "
        f"{max(seconds for _, _, seconds in per_round):.2f}s"
    )


def new_tenant(engine: Engine, name: str, limit_minor: int) -> str:
    """Create a tenant with a monthly credit limit and return its API key."""
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        tenant = Tenant(
            name=name, credit_limit_minor=limit_minor, credit_currency="USD"
        )
        session.add(tenant)
        session.flush()
        _, key = create_key(session, role="tenant", tenant_id=tenant.id)
    return key


@pytest.mark.parametrize("round_number", range(3), ids=lambda n: f"tenant-{n}")
def test_new_tenant_credit_never_overspent(cluster, round_number):
    gateways, engine, _ = cluster
    # Each order costs 1 unit x 1 hour x 2.50 = 2.50 USD, so 25.00 buys ten.
    key = new_tenant(engine, f"fresh-{round_number}", 2_500)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"resource_type": "compute", "quantity": 1, "hours": 1}
    batch = [
        (gateways[index % 2].url + "/rent_resource", body, headers)
        for index in range(50)
    ]

    responses = post_all_at_once(batch)

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 10, 402: 40}
    rejected = [r.json() for r in responses if r.status_code == 402]
    assert {problem["remaining"] for problem in rejected} == {"0.00"}
    with engine.connect() as connection:
        tenant_id = connection.scalar(
            select(Tenant.id).where(Tenant.name == f"fresh-{round_number}")
        )
        periods = connection.execute(
            select(CreditPeriod.used_minor, CreditPeriod.limit_minor).where(
                CreditPeriod.tenant_id == tenant_id
            )
        ).all()
        booked = connection.scalar(
            select(func.sum(LedgerEntry.amount_minor)).where(
                LedgerEntry.tenant_id == tenant_id
            )
        )
        leases = connection.scalar(
            text("SELECT count(*) FROM leases WHERE tenant_id = :t"), {"t": tenant_id}
        )
    assert periods == [(2_500, 2_500)]
    assert booked == 2_500
    assert leases == 10
