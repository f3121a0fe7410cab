"""A Hypothesis state machine of rent, release, extend and expire.

After every step a pool's used capacity must equal the quantities of its
pending and active leases, and match a model kept by the test.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, update

from rentgate.config import Settings
from rentgate.leases import expire_leases
from rentgate.models import CapacityPool, Lease, utcnow
from tests.conftest import make_settings

CAPACITY = 6
pool_numbers = itertools.count()


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Hundreds of requests a second come from one key, above the default limit.
    return make_settings(database_url, rate_limit="100000/second")


def test_pool_used_matches_live_leases(app, seeded, runtime):
    client = app.test_client()

    class LeaseMachine(RuleBasedStateMachine):
        leases = Bundle("leases")

        @initialize()
        def new_pool(self) -> None:
            self.pool = f"prop-{next(pool_numbers)}"
            with runtime.transaction() as session:
                session.add(
                    CapacityPool(
                        offering="compute", name=self.pool, capacity=CAPACITY, used=0
                    )
                )
            self.live: dict[str, int] = {}

        @rule(
            target=leases,
            quantity=st.integers(1, 4),
            hours=st.integers(1, 3),
        )
        def rent(self, quantity: int, hours: int) -> str:
            free = CAPACITY - sum(self.live.values())
            body = {
                "resource_type": "compute",
                "quantity": quantity,
                "hours": hours,
                "gpu_model": self.pool,
            }

            response = client.post("/rent_resource", json=body, headers=seeded.headers)

            if quantity > free:
                assert response.status_code == 409
                assert response.get_json()["free"] == free
                return ""
            assert response.status_code == 201
            lease_id = response.get_json()["lease"]["id"]
            self.live[lease_id] = quantity
            return lease_id

        @rule(lease_id=leases)
        def release(self, lease_id: str) -> None:
            if not lease_id:
                return
            response = client.post(
                f"/leases/{lease_id}/release", headers=seeded.headers
            )

            if lease_id in self.live:
                assert response.status_code == 200
                del self.live[lease_id]
            else:
                assert response.status_code == 422

        @rule(lease_id=leases, hours=st.integers(1, 5))
        def extend(self, lease_id: str, hours: int) -> None:
            if not lease_id:
                return
            response = client.post(
                f"/leases/{lease_id}/extend",
                json={"hours": hours},
                headers=seeded.headers,
            )

            assert response.status_code == (200 if lease_id in self.live else 422)

        @rule(lease_id=leases)
        def expire(self, lease_id: str) -> None:
            if not lease_id:
                return
            with runtime.transaction() as session:
                session.execute(
                    update(Lease)
                    .where(Lease.id == lease_id)
                    .values(expires_at=utcnow() - timedelta(seconds=1))
                )

            expired = expire_leases(runtime)

            assert expired == (1 if lease_id in self.live else 0)
            self.live.pop(lease_id, None)

        @invariant()
        def used_equals_live_leases(self) -> None:
            if not hasattr(self, "pool"):
                return
            with runtime.read_sessions() as session:
                pool = session.scalars(
                    select(CapacityPool).where(CapacityPool.name == self.pool)
                ).one()
                live_units = session.scalar(
                    select(func.coalesce(func.sum(Lease.quantity), 0)).where(
                        Lease.pool_id == pool.id,
                        Lease.state.in_(["pending", "active"]),
                    )
                )
            assert pool.used == live_units
            assert pool.used == sum(self.live.values())

    run_state_machine_as_test(
        LeaseMachine,
        settings=hypothesis_settings(
            max_examples=30,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
