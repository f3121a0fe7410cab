"""Orders forwarded end to end to a real provider server on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from rentgate.config import Settings
from rentgate.models import CapacityPool, Lease, LedgerEntry
from tests.conftest import Seeded, make_settings
from tests.upstream import UpstreamState, run_upstream


@pytest.fixture
def upstream() -> Iterator[tuple[str, UpstreamState]]:
    with run_upstream() as server:
        yield server


@pytest.fixture
def settings(database_url: str, upstream) -> Settings:
    url, _ = upstream
    return make_settings(
        database_url,
        providers={
            "local": {"kind": "local"},
            "gpu-farm": {"kind": "http", "base_url": url},
        },
        offering_providers={"compute": "gpu-farm", "custom_training": "gpu-farm"},
        provider_deadline=5.0,
    )


def test_compute_order_goes_to_upstream(client, seeded: Seeded, upstream, runtime):
    _, state = upstream

    response = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 3},
        headers=seeded.headers,
    )

    assert response.status_code == 201
    answer = response.get_json()
    lease = answer["lease"]
    assert answer["resource_id"] == "up-1"
    assert lease["provider"] == "gpu-farm"
    assert lease["details"]["provider"] == {"region": "local-1"}
    method, path, body, headers = state.requests[0]
    assert (method, path) == ("POST", "/rent")
    assert body["lease_id"] == lease["id"]
    assert body["order"] == {"resource_type": "compute", "quantity": 3}
    assert headers["Idempotency-Key"] == lease["id"]


def test_custom_training_uses_configured_provider(client, seeded: Seeded, upstream):
    _, state = upstream

    custom = client.post(
        "/custom_service",
        json={"service_type": "training", "requirement": "fine-tune on my data"},
        headers=seeded.headers,
    )
    platform = client.post(
        "/platform_service",
        json={"service_type": "training", "duration": 2},
        headers=seeded.headers,
    )

    assert custom.get_json()["lease"]["provider"] == "gpu-farm"
    assert platform.get_json()["lease"]["provider"] == "local"
    assert [path for _, path, _, _ in state.requests] == ["/train"]


def test_upstream_failure_books_nothing(client, seeded: Seeded, upstream, runtime):
    _, state = upstream
    state.fail_with = 500

    response = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 5},
        headers=seeded.headers,
    )

    assert response.status_code == 502
    problem = response.get_json()
    assert "status 500" in problem["detail"]
    with runtime.read_sessions() as session:
        lease = session.get(Lease, problem["lease_id"])
        pool = session.scalars(
            select(CapacityPool).where(CapacityPool.name == "standard")
        ).one()
        entries = session.scalar(select(func.count()).select_from(LedgerEntry))
    assert lease.state == "failed"
    assert lease.failed_at is not None
    assert pool.used == 0
    assert entries == 0


def test_unreachable_upstream_is_503(client, seeded: Seeded, runtime, database_url):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    from rentgate import create_app

    app = create_app(
        make_settings(
            database_url,
            providers={
                "local": {"kind": "local"},
                "gone": {"kind": "http", "base_url": f"http://127.0.0.1:{closed_port}"},
            },
            offering_providers={"data": "gone"},
            provider_retry_attempts=2,
        )
    )
    try:
        response = app.test_client().post(
            "/rent_resource",
            json={"resource_type": "data", "quantity": 1},
            headers=seeded.headers,
        )
    finally:
        app.extensions["rentgate"].close()

    assert response.status_code == 503
    assert "refused the connection" in response.get_json()["detail"]
    assert response.headers["Retry-After"] == "5"
