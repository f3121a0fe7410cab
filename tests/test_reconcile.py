"""The reconcile job: settling pending leases, alone and from two instances."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from rentgate.cli import main
from rentgate.config import Settings
from rentgate.models import CapacityPool, IdempotencyKey, Lease, LedgerEntry
from rentgate.providers.base import ProviderStatus, ProviderTimeout
from rentgate.reconcile import reconcile
from rentgate.runtime import Runtime
from tests.conftest import Seeded, make_settings
from tests.fake_providers import ScriptedProvider

PROVIDERS = {
    "local": {"kind": "local"},
    "scripted": {"kind": "tests.fake_providers:ScriptedProvider"},
}
BODY = {"resource_type": "data", "quantity": 1, "dataset": "imagenet-1k"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Many timeouts in a row must not open the circuit in these tests.
    return make_settings(
        database_url,
        providers=PROVIDERS,
        offering_providers={"data": "scripted"},
        circuit_failure_threshold=100,
    )


@pytest.fixture
def client(app):
    """A plain client: reconcile books charges that no 201 response shows."""
    return app.test_client()


@pytest.fixture(autouse=True)
def reset_fakes():
    ScriptedProvider.reset()
    yield
    ScriptedProvider.reset()


def leave_pending(client, seeded: Seeded, count: int, key_prefix: str = "") -> list:
    """Place orders whose provider call times out, so their leases stay pending."""
    ScriptedProvider.submit_error = lambda: ProviderTimeout("upstream timed out")
    ids = []
    for index in range(count):
        headers = {**seeded.headers, "Idempotency-Key": f"{key_prefix}{index}"}
        response = client.post("/rent_resource", json=BODY, headers=headers)
        assert response.status_code == 504
        assert "stays pending" in response.get_json()["detail"]
        ids.append(response.get_json()["lease_id"])
    ScriptedProvider.submit_error = None
    return ids


def states(runtime) -> Counter:
    with runtime.read_sessions() as session:
        return Counter(session.scalars(select(Lease.state)))


def pool_used(runtime) -> int:
    with runtime.read_sessions() as session:
        return session.scalar(
            select(CapacityPool.used).where(CapacityPool.name == "imagenet-1k")
        )


def charges(runtime) -> Counter:
    with runtime.read_sessions() as session:
        return Counter(
            session.scalars(
                select(LedgerEntry.lease_id).where(LedgerEntry.kind == "charge")
            )
        )


def test_unknown_outcome_stays_pending(client, seeded, runtime):
    leave_pending(client, seeded, 2)

    assert states(runtime) == {"pending": 2}
    assert pool_used(runtime) == 2
    assert charges(runtime) == {}


def test_reconcile_activates_and_logs(client, seeded, runtime, caplog):
    ids = leave_pending(client, seeded, 3)
    caplog.set_level(logging.INFO, logger="rentgate.reconcile")

    report = reconcile(runtime, older_than=timedelta(0))

    assert sorted(report.activated) == sorted(ids)
    assert report.failed == []
    assert report.still_pending == []
    assert states(runtime) == {"active": 3}
    assert charges(runtime) == {lease_id: 1 for lease_id in ids}
    assert pool_used(runtime) == 3
    for lease_id in ids:
        assert f"reconciled lease_id={lease_id} to active" in caplog.text


def test_reconciled_claim_replays_201(client, seeded, runtime):
    (lease_id,) = leave_pending(client, seeded, 1, key_prefix="retry-")
    headers = {**seeded.headers, "Idempotency-Key": "retry-0"}

    before = client.post("/rent_resource", json=BODY, headers=headers)
    reconcile(runtime, older_than=timedelta(0))
    after = client.post("/rent_resource", json=BODY, headers=headers)

    assert before.status_code == 409
    assert before.headers["Retry-After"] == "1"
    assert after.status_code == 201
    assert after.headers["Idempotent-Replayed"] == "true"
    assert after.get_json()["lease"]["id"] == lease_id
    assert after.get_json()["lease"]["state"] == "active"
    with runtime.read_sessions() as session:
        claim = session.scalars(select(IdempotencyKey)).one()
    assert claim.response_status == 201


def test_reconcile_skips_young_leases(client, seeded, runtime):
    leave_pending(client, seeded, 1)

    report = reconcile(runtime)  # the default threshold is 60 seconds

    assert report.activated == report.failed == report.still_pending == []
    assert states(runtime) == {"pending": 1}


def test_provider_failure_fails_and_frees(client, seeded, runtime):
    (lease_id,) = leave_pending(client, seeded, 1)
    ScriptedProvider.status_override = ProviderStatus("failed", reason="GPU lost")

    report = reconcile(runtime, older_than=timedelta(0))

    assert report.failed == [lease_id]
    with runtime.read_sessions() as session:
        lease = session.get(Lease, lease_id)
    assert lease.state == "failed"
    assert lease.failure_reason == "GPU lost"
    assert pool_used(runtime) == 0
    assert charges(runtime) == {}


def test_still_unknown_stays_pending(client, seeded, runtime):
    (lease_id,) = leave_pending(client, seeded, 1)
    ScriptedProvider.submit_error = lambda: ProviderTimeout("still timing out")

    report = reconcile(runtime, older_than=timedelta(0))

    assert report.still_pending == [lease_id]
    assert states(runtime) == {"pending": 1}
    assert pool_used(runtime) == 1


def test_two_reconcilers_settle_each_once(client, seeded, runtime, settings):
    ids = leave_pending(client, seeded, 12)
    ScriptedProvider.calls = Counter()
    ScriptedProvider.delay = 0.05
    runtimes = [Runtime.build(settings) for _ in range(2)]
    reports = [None, None]
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        barrier.wait(timeout=10)
        reports[index] = reconcile(runtimes[index], older_than=timedelta(0))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for other in runtimes:
            other.close()

    first, second = (set(report.activated) for report in reports)
    assert first | second == set(ids)
    assert first & second == set()
    assert states(runtime) == {"active": 12}
    assert charges(runtime) == {lease_id: 1 for lease_id in ids}
    if runtime.engine.dialect.name == "postgresql":
        # SKIP LOCKED keeps the second instance away from a lease being asked,
        # so both share the work. On SQLite both may ask about the same lease
        # and the first to commit settles it.
        assert first
        assert second
        assert {ScriptedProvider.calls[("status", i)] for i in ids} == {1}
        assert {ScriptedProvider.calls[("submit", i)] for i in ids} == {1}


def test_reconcile_command_output(client, seeded, runtime, database_url, monkeypatch):
    leave_pending(client, seeded, 2)
    monkeypatch.setenv("RENTGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("RENTGATE_PROVIDERS", json.dumps(PROVIDERS))
    monkeypatch.setenv("RENTGATE_OFFERING_PROVIDERS", json.dumps({"data": "scripted"}))

    result = CliRunner().invoke(main, ["reconcile", "--older-than", "0"])

    assert result.exit_code == 0, result.output
    assert result.output == "reconciled: 2 activated, 0 failed, 0 still pending\n"
    with runtime.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 2


def test_busy_settle_is_503_then_reconciled(client, seeded, runtime, monkeypatch):
    def busy_settle(*args, **kwargs) -> None:
        raise OperationalError("UPDATE leases", {}, Exception("database is locked"))

    monkeypatch.setattr("rentgate.ordering.settle_success", busy_settle)
    headers = {**seeded.headers, "Idempotency-Key": "busy-1"}
    busy = client.post("/rent_resource", json=BODY, headers=headers)
    monkeypatch.undo()

    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    lease_id = busy.get_json()["lease_id"]
    assert "stays pending until the reconcile job" in busy.get_json()["detail"]
    assert states(runtime) == {"pending": 1}

    reconcile(runtime, older_than=timedelta(0))
    retry = client.post("/rent_resource", json=BODY, headers=headers)

    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["lease"]["id"] == lease_id
    assert charges(runtime) == {lease_id: 1}
