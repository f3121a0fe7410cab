"""Untrusted provider responses and unknown outcomes, through the order route."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import responses
from sqlalchemy import func, select
from urllib3.exceptions import ProtocolError

from rentgate.config import Settings
from rentgate.models import CapacityPool, CreditPeriod, Lease, LedgerEntry
from rentgate.reconcile import reconcile
from tests.conftest import make_settings

GPU = "http://127.0.0.1:9/gpu"
COMPUTE = {"resource_type": "compute", "quantity": 4, "gpu_model": "a100-80gb"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        providers={
            "local": {"kind": "local"},
            "gpu-farm": {"kind": "http", "base_url": GPU},
        },
        offering_providers={"compute": "gpu-farm"},
    )


@pytest.fixture
def client(app):
    """A plain client: reconcile books charges that no 201 response shows."""
    return app.test_client()


@pytest.fixture
def upstream():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def reserved(runtime) -> tuple[int, int, int]:
    """Return the a100 pool's used units, credit used and ledger entries."""
    with runtime.read_sessions() as session:
        used = session.scalar(
            select(CapacityPool.used).where(CapacityPool.name == "a100-80gb")
        )
        credit = int(session.scalar(select(func.sum(CreditPeriod.used_minor))) or 0)
        entries = session.scalar(select(func.count()).select_from(LedgerEntry))
    return used, credit, entries


BAD_ANSWERS = [
    pytest.param(
        {"status": 302, "headers": {"Location": "http://127.0.0.1:9/elsewhere"}},
        "redirect 302, which is not followed",
        id="redirect",
    ),
    pytest.param(
        {"body": b'{"resource_id": "' + b"x" * 1_100_000 + b'"}'},
        "exceeds 1048576 bytes",
        id="oversized",
    ),
    pytest.param({"body": b"<html>ok</html>"}, "not JSON", id="html"),
    pytest.param({"json": ["gpu-1"]}, "not an object", id="json-array"),
    pytest.param({"json": {"id": "gpu-1"}}, "resource_id", id="missing-id"),
    pytest.param({"json": {"resource_id": ""}}, "resource_id", id="empty-id"),
    pytest.param({"json": {"resource_id": 42}}, "resource_id", id="number-id"),
    pytest.param({"json": {"resource_id": "r" * 201}}, "resource_id", id="long-id"),
    pytest.param({"status": 500, "json": {}}, "status 500", id="server-error"),
]


@pytest.mark.parametrize(("answer", "fragment"), BAD_ANSWERS)
def test_bad_answer_is_502_books_nothing(
    client, seeded, runtime, upstream, answer, fragment
):
    upstream.post(f"{GPU}/rent", **answer)

    response = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)

    assert response.status_code == 502
    problem = response.get_json()
    assert fragment in problem["detail"]
    assert len(upstream.calls) == 1
    with runtime.read_sessions() as session:
        lease = session.get(Lease, problem["lease_id"])
    assert lease.state == "failed"
    assert lease.resource_id is None
    assert reserved(runtime) == (0, 0, 0)


UNKNOWN = [
    pytest.param(
        requests.ConnectionError(
            ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        ),
        "Provider outcome unknown",
        id="connection-reset",
    ),
    pytest.param(
        requests.ReadTimeout("read timed out"), "Provider timed out", id="read-timeout"
    ),
]


@pytest.mark.parametrize(("error", "title"), UNKNOWN)
def test_unknown_outcome_stays_pending(client, seeded, runtime, upstream, error, title):
    upstream.post(f"{GPU}/rent", body=error)

    response = client.post("/rent_resource", json=COMPUTE, headers=seeded.headers)

    assert response.status_code == 504
    problem = response.get_json()
    assert problem["title"] == title
    assert "stays pending until the reconcile job settles it" in problem["detail"]
    assert len(upstream.calls) == 1  # not retried: the provider may have acted
    with runtime.read_sessions() as session:
        lease = session.get(Lease, problem["lease_id"])
    assert lease.state == "pending"
    assert reserved(runtime) == (4, 1000, 0)  # 4 GPUs x 1 h x 2.50 held, not booked


@pytest.mark.parametrize(("error", "title"), UNKNOWN)
def test_reconcile_settles_unknown_outcome(
    client, seeded, runtime, upstream, error, title
):
    upstream.post(f"{GPU}/rent", body=error)
    lease_id = client.post(
        "/rent_resource", json=COMPUTE, headers=seeded.headers
    ).get_json()["lease_id"]
    upstream.get(
        f"{GPU}/leases/{lease_id}", json={"state": "active", "resource_id": "gpu-7"}
    )

    report = reconcile(runtime, older_than=timedelta(0))

    assert report.activated == [lease_id]
    assert len(upstream.calls) == 2  # the order, then one status request
    with runtime.read_sessions() as session:
        lease = session.get(Lease, lease_id)
    assert lease.state == "active"
    assert lease.resource_id == "gpu-7"
    assert reserved(runtime) == (4, 1000, 1)
