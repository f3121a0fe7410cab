"""Liveness and readiness probes: cheap, and honest about the database."""

from __future__ import annotations

from sqlalchemy import event

from rentgate import create_app
from rentgate.migrations import head_revision
from tests.conftest import make_settings

UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/none"


def test_healthz_is_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["X-Request-ID"]


def test_healthz_runs_no_sql(app, client, runtime):
    statements = []

    def record(_connection, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", record)
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    event.remove(runtime.engine, "before_cursor_execute", record)

    assert statements == []


def test_readyz_reports_head_revision(client):
    response = client.get("/readyz")
    body = response.get_json()

    assert response.status_code == 200
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == {
        "current": head_revision(),
        "head": head_revision(),
    }
    assert body["checks"]["providers"] == {"local": "closed"}


def test_readyz_503_without_database():
    app = create_app(make_settings(UNREACHABLE))
    client = app.test_client()

    live = client.get("/healthz")
    ready = client.get("/readyz")
    app.extensions["rentgate"].close()

    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.get_json()["status"] == "not ready"
    assert ready.get_json()["checks"]["database"] == "unreachable: OperationalError"


def test_readyz_503_before_migrations(tmp_path):
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'empty.db'}"))

    response = app.test_client().get("/readyz")
    app.extensions["rentgate"].close()

    assert response.status_code == 503
    assert response.get_json()["checks"]["migrations"]["current"] is None
