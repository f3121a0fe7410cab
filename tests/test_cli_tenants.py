"""``rentgate tenants create`` input checks and a tenant's first order."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from rentgate.cli import main
from rentgate.models import Tenant


@pytest.fixture
def cli(database_url):
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(
            main, list(args), env={"RENTGATE_DATABASE_URL": database_url}
        )

    return run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["", "--credit-limit", "10"], "must be 1 to 80 letters", id="empty-name"
        ),
        pytest.param(["a/../b;<x>"], "must be 1 to 80 letters", id="unsafe-name"),
        pytest.param(
            ["acme", "--credit-limit", "-5"], "from 0 to 999999999999999", id="negative"
        ),
        pytest.param(
            ["acme", "--credit-limit", "1e30"], "from 0 to 999999999999999", id="huge"
        ),
        pytest.param(
            ["acme", "--credit-limit", "NaN"], "from 0 to 999999999999999", id="nan"
        ),
        pytest.param(
            ["acme", "--credit-limit", "abc"], "'abc' is not a number", id="text"
        ),
        pytest.param(
            ["acme", "--credit-limit", "1.005"], "more decimals than USD", id="decimals"
        ),
        pytest.param(
            ["acme", "--currency", "XX"], "'XX' is not supported", id="currency"
        ),
    ],
)
def test_create_rejects_bad_input(cli, runtime, args, message):
    result = cli("tenants", "create", *args)

    assert result.exit_code == 2
    assert message in result.output
    with runtime.read_sessions() as session:
        assert session.scalars(select(Tenant)).all() == []


def test_created_tenant_can_order(cli, client, seeded, runtime):
    result = cli("tenants", "create", "acme", "--credit-limit", "300.00")
    key = result.output.strip().splitlines()[-1]

    response = client.post(
        "/rent_resource",
        json={"resource_type": "compute", "quantity": 100},
        headers={"Authorization": f"Bearer {key}"},
    )

    assert result.exit_code == 0
    assert response.status_code == 201
    with runtime.read_sessions() as session:
        tenant = session.scalars(select(Tenant).where(Tenant.name == "acme")).one()
    assert tenant.credit_limit_minor == 30_000


def test_unmigrated_database_is_named(tmp_path):
    url = f"sqlite:///{tmp_path}/empty.db"

    result = CliRunner().invoke(main, ["reconcile"], env={"RENTGATE_DATABASE_URL": url})

    assert result.exit_code == 1
    assert "run `rentgate migrate` first" in result.output
