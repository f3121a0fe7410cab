"""The one-statement admission and activation on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select

from rentgate import fastpath
from rentgate.db import request_connection
from rentgate.models import IdempotencyKey, Lease, LedgerEntry, utcnow
from tests.conftest import Seeded, _truncate_postgres

pytestmark = pytest.mark.postgres

COMPUTE = {"resource_type": "compute", "quantity": 1, "hours": 1}


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """The run's PostgreSQL database, emptied; this module needs no SQLite run."""
    _truncate_postgres(postgres_url)
    return postgres_url


@contextmanager
def orm_statements(runtime) -> Iterator[list[list[str]]]:
    """Collect the first three words of each statement SQLAlchemy executes."""
    statements: list[list[str]] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement.split()[0:3])

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)


def test_fast_path_enabled(runtime):
    assert fastpath.enabled(runtime.engine)


def test_postgres_order_skips_orm_statements(client, seeded: Seeded, runtime):
    client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)
    with orm_statements(runtime) as statements:
        response = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)

    assert response.status_code == 201
    # Only the local provider's allocation goes through SQLAlchemy's execution.
    assert statements == [["INSERT", "INTO", "local_allocations"]]


def test_activate_skips_lease_not_pending(app, client, seeded: Seeded, runtime):
    response = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)
    lease_id = response.get_json()["lease"]["id"]

    with app.app_context():
        activated = fastpath.activate(
            request_connection(),
            lease_id=lease_id,
            resource_id="second-resource",
            now=utcnow(),
            expires_at=None,
            details=None,
        )

    assert activated is False
    with runtime.read_sessions() as session:
        stored = session.get(Lease, lease_id)
        charges = session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.lease_id == lease_id)
        )
    assert stored is not None
    assert stored.resource_id != "second-resource"
    assert charges == 1


def test_keyed_order_stores_response_at_once(client, seeded: Seeded, runtime):
    headers = {**seeded.headers, "Idempotency-Key": "fast-key-1"}
    # The first order reads the price into the cache.
    client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)
    with orm_statements(runtime) as statements:
        first = client.post("/rent_resource", json=COMPUTE, headers=headers)
    with runtime.read_sessions() as session:
        claim = session.scalars(
            select(IdempotencyKey).where(IdempotencyKey.key == "fast-key-1")
        ).one()
    replay = client.post("/rent_resource", json=COMPUTE, headers=headers)
    changed = client.post(
        "/rent_resource", json={**COMPUTE, "quantity": 2}, headers=headers
    )

    assert first.status_code == 201
    assert statements == [["INSERT", "INTO", "local_allocations"]]
    assert claim.tenant_id == seeded.tenant_id
    assert claim.lease_id == first.get_json()["lease"]["id"]
    assert claim.response_status == 201
    assert claim.response_body == first.get_json()
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == first.get_json()
    assert changed.status_code == 422


def test_keyed_replay_checks_api_key(client, seeded: Seeded):
    headers = {**seeded.headers, "Idempotency-Key": "fast-key-2"}
    first = client.post("/rent_resource", json=COMPUTE, headers=headers)
    stranger = client.post(
        "/rent_resource",
        json=COMPUTE,
        headers={**seeded.other_headers, "Idempotency-Key": "fast-key-2"},
    )
    bad_key = client.post(
        "/rent_resource",
        json=COMPUTE,
        headers={
            "Authorization": "Bearer rg_0123456789ab_not-a-real-key",
            "Idempotency-Key": "fast-key-2",
        },
    )

    assert first.status_code == 201
    assert stranger.status_code == 201
    assert stranger.get_json()["lease"]["id"] != first.get_json()["lease"]["id"]
    assert bad_key.status_code == 401
