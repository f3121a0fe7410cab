"""Per-provider circuit breakers seen through the order routes."""

from __future__ import annotations

import time

import pytest
import requests
import responses
from sqlalchemy import func, select

from rentgate.config import Settings
from rentgate.models import CapacityPool, Lease, LedgerEntry
from tests.conftest import make_settings

GPU = "http://127.0.0.1:9/gpu"
DATA = "http://127.0.0.1:9/data"
COMPUTE = {"resource_type": "compute", "quantity": 1}
DATASET = {"resource_type": "data", "quantity": 1}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        providers={
            "local": {"kind": "local"},
            "gpu-farm": {"kind": "http", "base_url": GPU},
            "data-farm": {"kind": "http", "base_url": DATA},
        },
        offering_providers={"compute": "gpu-farm", "data": "data-farm"},
        circuit_failure_threshold=3,
        circuit_reset_seconds=1.0,
    )


@pytest.fixture
def upstream():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{DATA}/rent", json={"resource_id": "ds-1"})
        yield mock


def gpu_calls(upstream) -> int:
    return sum(1 for call in upstream.calls if call.request.url == f"{GPU}/rent")


def order(client, seeded, body=COMPUTE):
    return client.post("/rent_resource", json=body, headers=seeded.headers)


def booked(runtime) -> tuple[int, int, dict]:
    with runtime.read_sessions() as session:
        used = session.scalar(
            select(func.sum(CapacityPool.used)).where(
                CapacityPool.offering == "compute"
            )
        )
        entries = session.scalar(select(func.count()).select_from(LedgerEntry))
        states = dict(
            session.execute(
                select(Lease.state, func.count()).group_by(Lease.state)
            ).all()
        )
    return used, entries, states


def test_open_circuit_fails_fast_with_503(client, seeded, runtime, upstream):
    upstream.post(f"{GPU}/rent", status=500, json={"error": "down"})

    failures = [order(client, seeded).status_code for _ in range(3)]
    fast = order(client, seeded)
    other = order(client, seeded, DATASET)

    assert failures == [502, 502, 502]
    assert gpu_calls(upstream) == 3
    assert fast.status_code == 503
    assert fast.headers["Retry-After"] == "1"
    assert "circuit is open" in fast.get_json()["detail"]
    assert "gpu-farm" in fast.get_json()["detail"]
    assert other.status_code == 201
    assert booked(runtime) == (0, 1, {"failed": 4, "active": 1})
    assert runtime.providers.breakers["gpu-farm"].current_state == "open"
    assert runtime.providers.breakers["data-farm"].current_state == "closed"


def test_probe_after_reset_closes_circuit(client, seeded, runtime, upstream):
    failing = upstream.post(f"{GPU}/rent", status=500, json={"error": "down"})
    for _ in range(3):
        order(client, seeded)
    assert order(client, seeded).status_code == 503

    time.sleep(1.1)
    upstream.remove(failing)
    upstream.post(f"{GPU}/rent", json={"resource_id": "gpu-1"})
    probe = order(client, seeded)
    after = order(client, seeded)

    assert probe.status_code == 201
    assert after.status_code == 201
    assert gpu_calls(upstream) == 5
    assert runtime.providers.breakers["gpu-farm"].current_state == "closed"


def test_failed_probe_reopens_circuit(client, seeded, runtime, upstream):
    upstream.post(f"{GPU}/rent", status=500, json={"error": "down"})
    for _ in range(3):
        order(client, seeded)

    time.sleep(1.1)
    probe = order(client, seeded)
    fast = order(client, seeded)

    assert probe.status_code == 502
    assert fast.status_code == 503
    assert gpu_calls(upstream) == 4


def test_rejections_do_not_open_circuit(client, seeded, runtime, upstream):
    upstream.post(f"{GPU}/rent", status=422, json={"error": "bad GPU model"})

    statuses = [order(client, seeded).status_code for _ in range(5)]

    assert statuses == [502] * 5
    assert gpu_calls(upstream) == 5
    assert runtime.providers.breakers["gpu-farm"].current_state == "closed"


def test_tripping_timeout_leaves_lease_pending(client, seeded, runtime, upstream):
    failing = upstream.post(f"{GPU}/rent", status=500, json={"error": "down"})
    order(client, seeded)
    order(client, seeded)
    upstream.remove(failing)
    upstream.post(f"{GPU}/rent", body=requests.ReadTimeout("read timed out"))

    third = order(client, seeded)

    assert third.status_code == 504
    assert "stays pending" in third.get_json()["detail"]
    with runtime.read_sessions() as session:
        lease = session.get(Lease, third.get_json()["lease_id"])
    assert lease.state == "pending"
    assert runtime.providers.breakers["gpu-farm"].current_state == "open"
    assert order(client, seeded).status_code == 503
