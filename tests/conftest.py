"""Fixtures: settings, an app per database backend, clients and seeded data.

Every test that takes ``app``, ``client`` or ``runtime`` runs twice, on SQLite
and on PostgreSQL. PostgreSQL comes from RENTGATE_TEST_POSTGRES_URL (default:
the local server's ``test`` database); the suite creates its own database next
to it and drops it at the end. An unreachable PostgreSQL fails the run, unless
RENTGATE_TEST_BACKENDS=sqlite narrows the backends on purpose.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from rentgate import create_app
from rentgate.auth import create_key
from rentgate.config import Settings
from rentgate.migrations import upgrade
from rentgate.models import LedgerEntry, Tenant
from rentgate.runtime import Runtime
from rentgate.seed import seed_demo

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = os.environ.get("RENTGATE_TEST_BACKENDS", "sqlite,postgres").split(",")
ORDER_ROUTES = ("/rent_resource", "/platform_service", "/custom_service")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the developer's RENTGATE_* variables from every test."""
    for name in list(os.environ):
        if name.startswith("RENTGATE_") and not name.startswith("RENTGATE_TEST_"):
            monkeypatch.delenv(name)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Build test settings that ignore any ``.env`` file."""
    values: dict[str, Any] = {"env": "test", "database_url": database_url}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("template") / "rentgate.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this run, dropped at the end."""
    base = make_url(os.environ.get("RENTGATE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    name = f"rentgate_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means no PostgreSQL
        pytest.fail(
            f"PostgreSQL at {base.render_as_string(hide_password=True)} is "
            f"unreachable ({type(exc).__name__}); start it, or set "
            "RENTGATE_TEST_BACKENDS=sqlite to run only the SQLite half."
        )
    url = base.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        tables = connection.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ).scalars()
        names = ", ".join(f'"{table}"' for table in tables)
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> str:
    """An empty migrated database on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "rentgate.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    application.extensions["rentgate"].close()


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    return app.extensions["rentgate"]


class RecordingClient(FlaskClient):
    """A test client that remembers the amount of every 201 order response."""

    booked: dict[str, Decimal]

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        path = args[0] if args and isinstance(args[0], str) else kwargs.get("path", "")
        if response.status_code == 201 and path in ORDER_ROUTES:
            lease = response.get_json()["lease"]
            self.booked[lease["id"]] = Decimal(lease["amount"])
        return response


@pytest.fixture
def client(app: Flask, runtime: Runtime) -> Iterator[RecordingClient]:
    """A client; afterwards the ledger's charges must equal the 201 amounts."""
    app.test_client_class = RecordingClient
    test_client = app.test_client()
    assert isinstance(test_client, RecordingClient)
    test_client.booked = {}
    yield test_client
    with runtime.read_sessions() as session:
        charged_minor = session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
                LedgerEntry.kind == "charge"
            )
        )
    assert Decimal(charged_minor) / 100 == sum(test_client.booked.values(), Decimal(0))


@dataclass
class Seeded:
    """The demo data plus a second tenant and an admin key."""

    tenant_id: int
    key: str
    other_tenant_id: int
    other_key: str
    admin_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def other_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.other_key}"}

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


@pytest.fixture
def seeded(runtime: Runtime) -> Seeded:
    """Demo prices, pools and tenant, a second tenant, and an admin key."""
    with runtime.transaction() as session:
        key = seed_demo(session)
        assert key is not None
        demo = session.scalars(select(Tenant).where(Tenant.name == "demo")).one()
        other = Tenant(name="other", credit_currency="USD")
        session.add(other)
        session.flush()
        _, other_key = create_key(session, role="tenant", tenant_id=other.id)
        _, admin_key = create_key(session, role="admin", tenant_id=None)
        return Seeded(demo.id, key, other.id, other_key, admin_key)
