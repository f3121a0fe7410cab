"""A Hypothesis state machine of rent, release, extend, expire and reconcile.

Orders go to a scripted provider that succeeds, times out (the lease stays
pending) or fails. After every step a pool's used capacity must equal the
quantities of its pending and active leases, and match a model kept by the
test.
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
from rentgate.providers.base import ProviderBadResponse, ProviderTimeout
from rentgate.reconcile import reconcile
from tests.conftest import make_settings
from tests.fake_providers import ScriptedProvider

CAPACITY = 6
pool_numbers = itertools.count()
PROVIDER_ERRORS = {
    "ok": None,
    "timeout": lambda: ProviderTimeout("upstream timed out"),
    "failure": lambda: ProviderBadResponse("upstream broke"),
}
EXPECTED_STATUS = {"ok": 201, "timeout": 504, "failure": 502}


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Hundreds of requests a second come from one key, above the default rate
    # limit, and many provider errors in a row must not open the circuit.
    return make_settings(
        database_url,
        rate_limit="100000/second",
        circuit_failure_threshold=100_000,
        providers={
            "local": {"kind": "local"},
            "scripted": {"kind": "tests.fake_providers:ScriptedProvider"},
        },
        offering_providers={"compute": "scripted"},
    )


@pytest.fixture(autouse=True)
def reset_fakes():
    ScriptedProvider.reset()
    yield
    ScriptedProvider.reset()


def test_pool_used_matches_live_leases(app, seeded, runtime):
    client = app.test_client()

    class LeaseMachine(RuleBasedStateMachine):
        leases = Bundle("leases")

        @initialize()
        def new_pool(self) -> None:
            # Each example gets its own pool, and earlier examples leave no
            # pending lease behind for this one's reconcile to find.
            ScriptedProvider.submit_error = None
            reconcile(runtime, older_than=timedelta(0))
            self.pool = f"prop-{next(pool_numbers)}"
            with runtime.transaction() as session:
                session.add(
                    CapacityPool(
                        offering="compute", name=self.pool, capacity=CAPACITY, used=0
                    )
                )
            # Live leases of this pool: id -> (quantity, "pending" or "active").
            self.live: dict[str, tuple[int, str]] = {}

        def state_of(self, lease_id: str) -> str | None:
            return self.live[lease_id][1] if lease_id in self.live else None

        @rule(
            target=leases,
            quantity=st.integers(1, 4),
            hours=st.integers(1, 3),
            outcome=st.sampled_from(sorted(PROVIDER_ERRORS)),
        )
        def rent(self, quantity: int, hours: int, outcome: str) -> str:
            free = CAPACITY - sum(units for units, _ in self.live.values())
            body = {
                "resource_type": "compute",
                "quantity": quantity,
                "hours": hours,
                "gpu_model": self.pool,
            }
            ScriptedProvider.submit_error = PROVIDER_ERRORS[outcome]

            response = client.post("/rent_resource", json=body, headers=seeded.headers)

            if quantity > free:
                assert response.status_code == 409
                assert response.get_json()["free"] == free
                return ""
            assert response.status_code == EXPECTED_STATUS[outcome]
            answer = response.get_json()
            if outcome == "ok":
                self.live[answer["lease"]["id"]] = (quantity, "active")
                return answer["lease"]["id"]
            if outcome == "timeout":
                self.live[answer["lease_id"]] = (quantity, "pending")
            return answer["lease_id"]

        @rule(lease_id=leases)
        def release(self, lease_id: str) -> None:
            if not lease_id:
                return
            response = client.post(
                f"/leases/{lease_id}/release", headers=seeded.headers
            )

            if self.state_of(lease_id) == "active":
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

            active = self.state_of(lease_id) == "active"
            assert response.status_code == (200 if active else 422)

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

            if self.state_of(lease_id) == "active":
                assert expired == 1
                del self.live[lease_id]
            else:
                assert expired == 0

        @rule()
        def settle_pending(self) -> None:
            ScriptedProvider.submit_error = None
            pending = {i for i, (_, state) in self.live.items() if state == "pending"}

            report = reconcile(runtime, older_than=timedelta(0))

            assert set(report.activated) == pending
            assert report.failed == report.still_pending == []
            for lease_id in pending:
                self.live[lease_id] = (self.live[lease_id][0], "active")

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
            assert pool.used == sum(units for units, _ in self.live.values())

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
