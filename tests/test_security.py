"""Tenant isolation, fixed upstream URLs, safe errors, size limits and revocation."""

from __future__ import annotations

import json
import re

import pytest
import requests
import responses
from flask import Flask
from sqlalchemy import select

from rentgate import create_app, openapi
from rentgate.auth import hash_key
from rentgate.config import SettingsError, load_settings
from rentgate.models import ApiKey, Lease, utcnow
from tests.conftest import make_settings
from tests.live_server import start_live_server

ORDER = {"resource_type": "compute", "quantity": 2, "hours": 3}
UPSTREAM = "http://127.0.0.1:9/provider"
# Names a request field would use to point the gateway at another host.
URL_FIELDS = ("url", "base_url", "host", "endpoint", "callback", "webhook")


def _tenant_object_rules(app: Flask) -> list:
    rules = []
    for rule in app.url_map.iter_rules():
        spec = openapi.operation_of(app, rule)
        ids = [name for name in rule.arguments if name == "id" or name.endswith("_id")]
        if spec is not None and spec.auth == "tenant" and ids:
            rules.append(rule)
    return rules


def _place_order(client, seeded) -> str:
    response = client.post("/rent_resource", json=ORDER, headers=seeded.headers)
    assert response.status_code == 201
    return response.get_json()["lease"]["id"]


def test_other_tenant_gets_404_on_every_object_route(app, client, seeded, runtime):
    lease_id = _place_order(client, seeded)
    rules = _tenant_object_rules(app)
    called = []

    for rule in rules:
        (argument,) = [name for name in rule.arguments]
        path = rule.rule.replace(f"<{argument}>", lease_id)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(
                path, method=method, json={"hours": 1}, headers=seeded.other_headers
            )
            assert response.status_code == 404, f"{method} {path}"
            assert response.mimetype == "application/problem+json"
            assert lease_id in response.get_json()["detail"]
            called.append(f"{method} {rule.rule}")

    assert sorted(called) == [
        "GET /leases/<lease_id>",
        "POST /leases/<lease_id>/extend",
        "POST /leases/<lease_id>/release",
    ]
    with runtime.read_sessions() as session:
        lease = session.get(Lease, lease_id)
    assert lease.state == "active"
    assert lease.hours == 3


def test_owner_still_reaches_own_lease(client, seeded):
    lease_id = _place_order(client, seeded)

    response = client.get(f"/leases/{lease_id}", headers=seeded.headers)

    assert response.status_code == 200
    assert response.get_json()["id"] == lease_id


def test_other_tenant_list_excludes_leases(client, seeded):
    _place_order(client, seeded)

    response = client.get("/leases", headers=seeded.other_headers)

    assert response.status_code == 200
    assert response.get_json()["total"] == 0


def _request_schemas(document: dict) -> dict[str, dict]:
    """Return every component schema that a request body refers to, nested too."""
    schemas = document["components"]["schemas"]
    pending = [
        media["schema"]["$ref"].rsplit("/", 1)[1]
        for item in document["paths"].values()
        for operation in item.values()
        for media in operation.get("requestBody", {}).get("content", {}).values()
    ]
    found: dict[str, dict] = {}
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found[name] = schemas[name]
        for ref in re.findall(
            r'"#/components/schemas/([^"]+)"', json.dumps(schemas[name])
        ):
            pending.append(ref)
    return found


def test_no_request_field_names_a_url(client):
    document = client.get("/openapi.json").get_json()
    request_schemas = _request_schemas(document)

    assert {"ComputeOrder", "ExtendBody", "CustomTrainingOrder"} <= set(request_schemas)
    for name, schema in request_schemas.items():
        for field in schema.get("properties", {}):
            assert field not in URL_FIELDS, f"{name}.{field}"
        assert '"format": "uri"' not in json.dumps(schema), name
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation["parameters"]:
                assert parameter.get("name") not in URL_FIELDS


@pytest.fixture
def remote_app(database_url):
    settings = make_settings(
        database_url,
        providers={
            "local": {"kind": "local"},
            "remote": {"kind": "http", "base_url": UPSTREAM},
        },
        offering_providers={"compute": "remote"},
    )
    application = create_app(settings)
    yield application
    application.extensions["rentgate"].close()


@pytest.fixture
def remote_client(remote_app, seeded_remote):
    return remote_app.test_client()


@pytest.fixture
def seeded_remote(remote_app):
    from tests.live_server import migrate_and_seed

    runtime = remote_app.extensions["rentgate"]
    return migrate_and_seed(runtime.settings.database_url)


@responses.activate
@pytest.mark.parametrize("field", URL_FIELDS)
def test_url_field_in_order_is_rejected(remote_client, seeded_remote, field):
    body = {**ORDER, field: "http://169.254.169.254/latest"}

    response = remote_client.post(
        "/rent_resource",
        json=body,
        headers={"Authorization": f"Bearer {seeded_remote}"},
    )

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == field
    assert len(responses.calls) == 0


@responses.activate
def test_host_headers_do_not_move_upstream(remote_client, seeded_remote):
    responses.post(f"{UPSTREAM}/rent", json={"resource_id": "gpu-9"})

    response = remote_client.post(
        "/rent_resource",
        json=ORDER,
        headers={
            "Authorization": f"Bearer {seeded_remote}",
            "Host": "evil.example",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "host=evil.example",
        },
    )

    assert response.status_code == 201
    assert [call.request.url for call in responses.calls] == [f"{UPSTREAM}/rent"]


def test_production_rejects_debug():
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None, env="production", debug=True)

    assert "RENTGATE_DEBUG must be false" in str(raised.value)


def test_production_env_vars_reject_debug(monkeypatch):
    monkeypatch.setenv("RENTGATE_ENV", "production")
    monkeypatch.setenv("RENTGATE_DEBUG", "true")

    with pytest.raises(SettingsError):
        create_app()


@pytest.mark.parametrize("env", ["test", "production"])
def test_unexpected_error_hides_traceback(database_url, env):
    app = create_app(make_settings(database_url, env=env))

    @app.get("/explode")
    def explode():
        raise RuntimeError("secret internals at /srv/rentgate/db.py line 12")

    response = app.test_client().get("/explode")
    text = response.get_data(as_text=True)
    app.extensions["rentgate"].close()

    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "Traceback" not in text
    assert "secret internals" not in text
    assert "RuntimeError" not in text
    assert response.get_json()["detail"].startswith("An unexpected error occurred")


def test_oversized_bodies_get_413(client, seeded):
    document = client.get("/openapi.json").get_json()
    body = b'{"pad": "' + b"x" * 65_536 + b'"}'
    checked = []
    for path, item in document["paths"].items():
        headers = seeded.admin_headers if path.startswith("/admin") else seeded.headers
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            url = re.sub(r"\{[^}]+\}", "1", path)
            response = client.open(
                url,
                method=method.upper(),
                data=body,
                content_type="application/json",
                headers=headers,
            )
            assert response.status_code == 413, f"{method} {path}"
            assert response.get_json()["status"] == 413
            checked.append(path)

    assert len(checked) >= 5


def test_nul_in_lease_id_is_404(client, seeded):
    response = client.get("/leases/abc%00def", headers=seeded.headers)

    assert response.status_code == 404


@pytest.mark.slow
def test_revoked_key_fails_at_once_on_all_workers(database_url, tmp_path):
    server = start_live_server(tmp_path, database_url=database_url, workers=2)
    try:
        before = requests.get(f"{server.base_url}/leases", headers=server.headers)
        _revoke(server.database_url, server.api_key)
        after = [
            requests.get(f"{server.base_url}/leases", headers=server.headers)
            for _ in range(6)
        ]
    finally:
        server.stop()

    assert before.status_code == 200
    assert [response.status_code for response in after] == [401] * 6


def _revoke(database_url: str, key: str) -> None:
    from rentgate.runtime import Runtime

    runtime = Runtime.build(make_settings(database_url))
    try:
        with runtime.transaction() as session:
            row = session.scalars(
                select(ApiKey).where(ApiKey.key_hash == hash_key(key))
            ).one()
            row.revoked_at = utcnow()
    finally:
        runtime.close()


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer rg_0123456789ab_not-a-real-key", "Basic dXNlcjpwYXNz"],
    ids=["missing", "unknown", "basic"],
)
def test_secured_operations_need_valid_key(database_url, seeded, authorization):
    app = create_app(make_settings(database_url, rate_limit="100000/second"))
    client = app.test_client()
    document = client.get("/openapi.json").get_json()
    headers = {"Authorization": authorization} if authorization else {}
    checked = 0

    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not operation["security"]:
                continue
            url = re.sub(r"\{[^}]+\}", "1", path)
            response = client.open(url, method=method.upper(), json={}, headers=headers)
            assert response.status_code == 401, f"{method} {path}"
            assert response.get_json()["status"] == 401
            checked += 1
    app.extensions["rentgate"].close()

    assert checked >= 7


def test_huge_path_id_is_404(client, seeded):
    response = client.get(
        "/admin/tenants/99999999999999999999999", headers=seeded.admin_headers
    )

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
