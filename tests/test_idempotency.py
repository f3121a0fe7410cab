"""Idempotency-Key: validation, replay, conflicts, in-flight requests, pruning."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from rentgate.cli import main
from rentgate.config import Settings
from rentgate.jobs import prune_idempotency_keys
from rentgate.models import IdempotencyKey, Lease, LedgerEntry, LocalAllocation, utcnow
from rentgate.providers.base import ProviderBadResponse
from tests.conftest import Seeded, make_settings
from tests.fake_providers import GatedProvider, ScriptedProvider

COMPUTE = {"resource_type": "compute", "quantity": 2, "hours": 3}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        providers={
            "local": {"kind": "local"},
            "gated": {"kind": "tests.fake_providers:GatedProvider"},
            "scripted": {"kind": "tests.fake_providers:ScriptedProvider"},
        },
        offering_providers={"platform_training": "gated", "data": "scripted"},
    )


@pytest.fixture(autouse=True)
def reset_fakes():
    GatedProvider.reset()
    ScriptedProvider.reset()
    yield
    GatedProvider.proceed.set()
    ScriptedProvider.reset()


def order(
    client, seeded: Seeded, key: str | None, body=COMPUTE, route="/rent_resource"
):
    headers = dict(seeded.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(route, json=body, headers=headers)


def count(runtime, model) -> int:
    with runtime.read_sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="256-chars"),
        pytest.param("tab\there", id="control-char"),
        pytest.param("caf\u00e9", id="non-ascii"),
    ],
)
def test_malformed_key_is_400(client, seeded, runtime, key):
    response = order(client, seeded, key)

    assert response.status_code == 400
    problem = response.get_json()
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert "1 to 255 printable ASCII" in problem["detail"]
    assert count(runtime, IdempotencyKey) == 0
    assert count(runtime, Lease) == 0


@pytest.mark.parametrize("key", ["a", "~" * 255, "order 42 / retry!"])
def test_valid_key_bounds_accepted(client, seeded, key):
    assert order(client, seeded, key).status_code == 201


def test_same_key_same_body_replays(client, seeded, runtime):
    first = order(client, seeded, "k-1")
    reordered = dict(reversed(list(COMPUTE.items())))
    second = order(client, seeded, "k-1", body=reordered)

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    assert second.get_json() == first.get_json()
    assert count(runtime, Lease) == 1
    assert count(runtime, LedgerEntry) == 1
    assert count(runtime, LocalAllocation) == 1


def test_same_key_other_body_is_422(client, seeded, runtime):
    order(client, seeded, "k-2")

    response = order(client, seeded, "k-2", body={**COMPUTE, "quantity": 3})

    assert response.status_code == 422
    assert "already used with a different body" in response.get_json()["detail"]
    assert response.get_json()["idempotency_key"] == "k-2"
    assert count(runtime, Lease) == 1


def test_key_scoped_to_tenant_and_route(client, seeded, runtime):
    first = order(client, seeded, "shared")
    other_route = order(
        client,
        seeded,
        "shared",
        body={"service_type": "optimization", "requirement": "faster"},
        route="/custom_service",
    )
    other_tenant = client.post(
        "/rent_resource",
        json=COMPUTE,
        headers={**seeded.other_headers, "Idempotency-Key": "shared"},
    )

    assert [first.status_code, other_route.status_code, other_tenant.status_code] == [
        201,
        201,
        201,
    ]
    assert "Idempotent-Replayed" not in other_tenant.headers
    assert count(runtime, Lease) == 3
    assert count(runtime, IdempotencyKey) == 3


def test_rejected_body_stores_nothing(client, seeded, runtime):
    invalid = order(client, seeded, "k-3", body={**COMPUTE, "quantity": 0})
    valid = order(client, seeded, "k-3")

    assert invalid.status_code == 422
    assert valid.status_code == 201
    assert "Idempotent-Replayed" not in valid.headers


def test_rejected_admission_stores_nothing(client, seeded, runtime):
    too_many = {"resource_type": "compute", "quantity": 65, "gpu_model": "h100-80gb"}

    response = order(client, seeded, "k-4", body=too_many)

    assert response.status_code == 409
    assert count(runtime, IdempotencyKey) == 0


def test_provider_failure_is_replayed(client, seeded, runtime):
    ScriptedProvider.submit_error = lambda: ProviderBadResponse("upstream broke")
    body = {"resource_type": "data", "quantity": 1}

    first = order(client, seeded, "k-5", body=body)
    ScriptedProvider.submit_error = None
    second = order(client, seeded, "k-5", body=body)

    assert first.status_code == 502
    assert second.status_code == 502
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_json() == first.get_json()
    assert ScriptedProvider.calls[("submit", first.get_json()["lease_id"])] == 1


def test_in_flight_key_is_409_and_claim_committed(app, seeded, runtime):
    body = {"service_type": "training", "duration": 2}
    headers = {**seeded.headers, "Idempotency-Key": "k-6"}
    answers = {}

    def first_request() -> None:
        answers["first"] = app.test_client().post(
            "/platform_service", json=body, headers=headers
        )

    thread = threading.Thread(target=first_request)
    thread.start()
    try:
        assert GatedProvider.entered.wait(timeout=10)
        # The provider is being called now: the claim and the pending lease
        # must already be visible to any other connection.
        with runtime.read_sessions() as session:
            claim = session.scalars(select(IdempotencyKey)).one()
            lease = session.get(Lease, claim.lease_id)
        assert claim.key == "k-6"
        assert claim.response_status is None
        assert lease.state == "pending"

        during = app.test_client().post("/platform_service", json=body, headers=headers)
    finally:
        GatedProvider.proceed.set()
        thread.join(timeout=15)
    after = app.test_client().post("/platform_service", json=body, headers=headers)

    assert during.status_code == 409
    assert during.headers["Retry-After"] == "1"
    assert "still being processed" in during.get_json()["detail"]
    assert during.get_json()["lease_id"] == lease.id
    assert answers["first"].status_code == 201
    assert after.status_code == 201
    assert after.headers["Idempotent-Replayed"] == "true"
    assert after.get_json() == answers["first"].get_json()
    assert count(runtime, Lease) == 1


def test_concurrent_same_key_books_once(app, seeded, runtime):
    headers = {**seeded.headers, "Idempotency-Key": "k-7"}
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def send() -> None:
        client = app.test_client()
        barrier.wait(timeout=10)
        statuses.append(
            client.post("/rent_resource", json=COMPUTE, headers=headers).status_code
        )

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(statuses) == 8
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    assert count(runtime, Lease) == 1
    assert count(runtime, LedgerEntry) == 1
    assert count(runtime, IdempotencyKey) == 1


def age_keys(runtime, hours: float) -> None:
    with runtime.transaction() as session:
        session.execute(
            update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=hours))
        )


def test_prune_keeps_keys_for_24_hours(client, seeded, runtime):
    order(client, seeded, "young")
    age_keys(runtime, 23.9)

    assert prune_idempotency_keys(runtime) == 0
    assert order(client, seeded, "young").headers["Idempotent-Replayed"] == "true"


def test_prune_deletes_only_old_finished_keys(client, seeded, runtime):
    order(client, seeded, "old")
    with runtime.transaction() as session:
        lease_id = session.scalars(select(Lease.id)).one()
        session.add(
            IdempotencyKey(
                tenant_id=seeded.tenant_id,
                route="rent_resource",
                key="unfinished",
                request_hash="0" * 64,
                lease_id=lease_id,
            )
        )
    age_keys(runtime, 25)

    order(client, seeded, "fresh")  # the request path never prunes
    assert count(runtime, IdempotencyKey) == 3

    assert prune_idempotency_keys(runtime) == 1
    with runtime.read_sessions() as session:
        keys = set(session.scalars(select(IdempotencyKey.key)))
    assert keys == {"unfinished", "fresh"}


def test_prune_command_reports_count(
    client, seeded, runtime, database_url, monkeypatch
):
    order(client, seeded, "old-1")
    order(client, seeded, "old-2")
    age_keys(runtime, 48)
    monkeypatch.setenv("RENTGATE_DATABASE_URL", database_url)

    result = CliRunner().invoke(main, ["prune-idempotency"])

    assert result.exit_code == 0, result.output
    assert result.output == "pruned 2 idempotency keys\n"
    assert count(runtime, IdempotencyKey) == 0
