"""SQLite has one writer: contention must be a bounded wait or a 503, never a 500.

Four gunicorn workers share one SQLite file and receive orders released
together by a barrier.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from rentgate.migrations import upgrade
from rentgate.models import CapacityPool, Lease, LedgerEntry
from rentgate.reconcile import reconcile
from rentgate.runtime import Runtime
from tests.conftest import make_settings
from tests.gateway_procs import gateway_env, post_all_at_once, running_gateways, seed

pytestmark = pytest.mark.slow

POOL = "imagenet-1k"  # 50 units in the demo data


def sqlite_file(folder: Path) -> tuple[str, str]:
    url = f"sqlite:///{folder / 'rentgate.db'}"
    upgrade(url)
    return url, seed(url)


def books(url: str) -> tuple[int, int, Counter, Counter]:
    """Return pool used, units of live leases, lease states and charged states."""
    engine = create_engine(url)
    with engine.connect() as connection:
        used = connection.scalar(
            select(CapacityPool.used).where(CapacityPool.name == POOL)
        )
        live_units = connection.scalar(
            select(func.coalesce(func.sum(Lease.quantity), 0)).where(
                Lease.state.in_(["pending", "active"])
            )
        )
        states = Counter(connection.scalars(select(Lease.state)))
        charged = Counter(
            connection.scalars(
                select(Lease.state)
                .join(LedgerEntry, LedgerEntry.lease_id == Lease.id)
                .where(LedgerEntry.kind == "charge")
            )
        )
    engine.dispose()
    return used, live_units, states, charged


def orders(gateway_url: str, key: str, count: int) -> list:
    body = {"resource_type": "data", "quantity": 1, "dataset": POOL}
    headers = {"Authorization": f"Bearer {key}"}
    return [(gateway_url + "/rent_resource", body, headers)] * count


def test_busy_wait_serialises_writers(tmp_path):
    url, key = sqlite_file(tmp_path)

    with running_gateways(gateway_env(url), tmp_path, workers=4) as (gateway,):
        started = time.monotonic()
        responses = post_all_at_once(orders(gateway.url, key, 80))
        elapsed = time.monotonic() - started

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 50, 409: 30}
    used, live_units, states, charged = books(url)
    assert used == live_units == 50
    assert states == {"active": 50}
    assert charged == {"active": 50}
    assert elapsed < 30


def test_no_busy_wait_gives_503_not_500(tmp_path):
    url, key = sqlite_file(tmp_path)
    env = gateway_env(url, sqlite_busy_timeout_ms=0)

    with running_gateways(env, tmp_path, workers=4) as (gateway,):
        responses = post_all_at_once(orders(gateway.url, key, 80))

    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {201, 409, 503}, statuses
    assert statuses[201] <= 50
    for response in responses:
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "1"
            assert response.headers["Content-Type"] == "application/problem+json"
            assert "busy" in response.json()["detail"]
    used, live_units, states, charged = books(url)
    assert used == live_units
    assert states["active"] == statuses[201]
    assert set(charged) <= {"active"}
    print(f"80 orders, busy timeout 0 ms: {dict(statuses)}; leases {dict(states)}")

    # A 503 from the settle step leaves its lease pending, and reconcile ends it.
    pending_before = states["pending"]
    runtime = Runtime.build(make_settings(url))
    try:
        report = reconcile(runtime, older_than=timedelta(0))
    finally:
        runtime.close()
    used, live_units, states, charged = books(url)
    assert len(report.activated) + len(report.failed) == pending_before
    assert "pending" not in states
    assert used == live_units
