"""API keys: missing, wrong, revoked and admin keys on tenant routes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from rentgate.auth import hash_key
from rentgate.models import ApiKey, utcnow

BODY = {"resource_type": "compute", "quantity": 1}


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing"),
        pytest.param("Bearer", id="empty-token"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
        pytest.param("Bearer rg_000000000000_wrong", id="unknown-key"),
        pytest.param("Bearer not-a-key", id="malformed"),
    ],
)
def test_bad_credentials_are_401(client, seeded, header):
    headers = {"Authorization": header} if header else {}

    response = client.post("/rent_resource", json=BODY, headers=headers)

    assert response.status_code == 401
    assert "API key" in response.get_json()["detail"]


def test_wrong_secret_with_known_prefix_is_401(client, seeded):
    prefix = seeded.key.split("_")[1]

    response = client.post(
        "/rent_resource",
        json=BODY,
        headers={"Authorization": f"Bearer rg_{prefix}_guess"},
    )

    assert response.status_code == 401


def test_revoked_key_is_401(client, seeded, runtime):
    with runtime.transaction() as session:
        row = session.scalars(
            select(ApiKey).where(ApiKey.key_hash == hash_key(seeded.key))
        ).one()
        row.revoked_at = utcnow()

    response = client.post("/rent_resource", json=BODY, headers=seeded.headers)

    assert response.status_code == 401


def test_admin_key_on_tenant_route_is_403(client, seeded):
    response = client.post("/rent_resource", json=BODY, headers=seeded.admin_headers)

    assert response.status_code == 403


def test_only_hash_is_stored(runtime, seeded):
    with runtime.read_sessions() as session:
        rows = session.scalars(select(ApiKey)).all()

    assert all(seeded.key not in (row.key_hash, row.prefix, row.label) for row in rows)
    assert any(row.key_hash == hash_key(seeded.key) for row in rows)


def test_401_names_bearer_scheme(client):
    response = client.get("/leases")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="rentgate"'


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        pytest.param("req-42.a:b", True, id="plain"),
        pytest.param("x tenant_id=2 forged=1", False, id="spaces"),
        pytest.param("attacker<script>", False, id="markup"),
        pytest.param("a" * 129, False, id="too-long"),
    ],
)
def test_request_id_kept_only_if_safe(client, sent, kept):
    response = client.get("/healthz", headers={"X-Request-ID": sent})

    returned = response.headers["X-Request-ID"]
    assert (returned == sent) is kept
    assert len(returned) <= 128
