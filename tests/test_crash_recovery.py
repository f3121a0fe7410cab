"""kill -9 of a gunicorn worker mid-order, then restart and reconcile.

The worker is killed at one of three phases. The first is after the pending
lease is committed and before the provider is called. The second is after the
provider allocated the resource and before it returned. The third is just
before the settlement commits: after the charge is inserted on the transaction
path, or before the activation statement is sent on PostgreSQL's
one-statement path, which these tests take.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from rentgate.models import CapacityPool, Lease, LedgerEntry, LocalAllocation
from tests.crash_provider import PHASES
from tests.gateway_procs import Gateway, gateway_env, scratch_database, seed

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROVIDERS = {"local": {"kind": "tests.crash_provider:CrashingLocalProvider"}}
BODY = {"resource_type": "compute", "quantity": 3, "gpu_model": "h100-80gb", "hours": 2}


@pytest.fixture(scope="module")
def crash_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Engine, str, dict[str, str], Path]]:
    """One single-worker gunicorn on PostgreSQL whose worker a test can crash."""
    folder = tmp_path_factory.mktemp("crash")
    crash_file = folder / "crash-phase"
    with scratch_database("rentgate_crash") as url:
        key = seed(url)
        env = gateway_env(url, providers=json.dumps(PROVIDERS))
        env["RENTGATE_TEST_CRASH_FILE"] = str(crash_file)
        engine = create_engine(url)
        gateway = Gateway(
            env, folder / "gunicorn.log", workers=1, app="tests.crash_wsgi:app"
        )
        try:
            gateway.wait_ready()
            yield gateway, engine, key, env, crash_file
        finally:
            gateway.stop()
            engine.dispose()


def run_reconcile(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "rentgate.cli", "reconcile", "--older-than", "0"],
        env={**env, "RENTGATE_LOG_LEVEL": "INFO"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def count_leases(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Lease))


def check_books(engine: Engine) -> None:
    """Assert no pending lease, no orphan charge, no capacity kept by dead leases."""
    with engine.connect() as connection:
        states = dict(
            connection.execute(
                select(Lease.state, func.count()).group_by(Lease.state)
            ).all()
        )
        charged_states = connection.execute(
            select(Lease.state, func.count())
            .join(LedgerEntry, LedgerEntry.lease_id == Lease.id)
            .where(LedgerEntry.kind == "charge")
            .group_by(Lease.state)
        ).all()
        charges_per_lease = set(
            connection.scalars(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.kind == "charge")
                .group_by(LedgerEntry.lease_id)
            )
        )
        used = connection.scalar(
            select(CapacityPool.used).where(CapacityPool.name == "h100-80gb")
        )
        live_units = connection.scalar(
            select(func.coalesce(func.sum(Lease.quantity), 0))
            .join(CapacityPool, Lease.pool_id == CapacityPool.id)
            .where(
                CapacityPool.name == "h100-80gb",
                Lease.state.in_(["pending", "active"]),
            )
        )
    assert "pending" not in states
    assert set(dict(charged_states)) <= {"active"}
    assert charges_per_lease <= {1}
    assert used == live_units


@pytest.mark.parametrize("phase", PHASES)
def test_worker_killed_mid_order(crash_gateway, phase):
    gateway, engine, key, env, crash_file = crash_gateway
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"crash-{phase}"}
    first_pid = gateway.worker_pids()
    leases_before = count_leases(engine)
    crash_file.write_text(phase)

    with pytest.raises(requests.ConnectionError):
        requests.post(
            gateway.url + "/rent_resource", json=BODY, headers=headers, timeout=20
        )
    gateway.wait_ready()
    assert gateway.worker_pids() != first_pid
    assert not crash_file.exists()

    with engine.connect() as connection:
        (lease_id, state) = connection.execute(
            select(Lease.id, Lease.state).order_by(Lease.created_at.desc()).limit(1)
        ).one()
        allocated = connection.scalar(
            select(func.count())
            .select_from(LocalAllocation)
            .where(LocalAllocation.lease_id == lease_id)
        )
    assert state == "pending"
    assert allocated == (0 if phase == "before_provider" else 1)
    early = requests.post(
        gateway.url + "/rent_resource", json=BODY, headers=headers, timeout=20
    )
    assert early.status_code == 409
    assert early.headers["Retry-After"] == "1"

    result = run_reconcile(env)

    assert result.stdout == "reconciled: 1 activated, 0 failed, 0 still pending\n"
    assert f"reconciled lease_id={lease_id} to active" in result.stderr
    check_books(engine)
    retry = requests.post(
        gateway.url + "/rent_resource", json=BODY, headers=headers, timeout=20
    )
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    lease = retry.json()["lease"]
    assert lease["id"] == lease_id
    assert lease["state"] == "active"
    with engine.connect() as connection:
        allocations = connection.scalars(
            select(LocalAllocation.resource_id).where(
                LocalAllocation.lease_id == lease_id
            )
        ).all()
        charges = connection.scalars(
            select(LedgerEntry.amount_minor).where(LedgerEntry.lease_id == lease_id)
        ).all()
    assert allocations == [retry.json()["resource_id"]]
    assert charges == [1500]  # 3 GPUs x 2 h x 2.50
    assert count_leases(engine) == leases_before + 1
