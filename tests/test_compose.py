"""docker-compose.yml, Dockerfile and .env.example agree with each other and rentgate.

No Docker engine runs here, so these tests read the files instead of
starting the stack.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from rentgate.config import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def _expand(value: str) -> str:
    # ${NAME:-default} as Compose does with NAME unset.
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def test_services_present(compose):
    assert set(compose["services"]) == {"gateway", "migrate", "postgres", "redis"}


def test_gateway_waits_for_migration_and_health(compose):
    depends = compose["services"]["gateway"]["depends_on"]

    assert depends["migrate"] == {"condition": "service_completed_successfully"}
    assert depends["postgres"] == {"condition": "service_healthy"}
    assert depends["redis"] == {"condition": "service_healthy"}
    assert compose["services"]["migrate"]["command"] == ["rentgate", "migrate"]
    assert compose["services"]["migrate"]["depends_on"]["postgres"] == {
        "condition": "service_healthy"
    }


@pytest.mark.parametrize("service", ["gateway", "postgres", "redis"])
def test_long_running_services_have_health_checks(compose, service):
    check = compose["services"][service]["healthcheck"]

    assert check["test"][0] == "CMD"
    assert check["retries"] >= 3


def test_gateway_port_matches_bind(compose):
    gateway = compose["services"]["gateway"]
    bind = gateway["environment"]["RENTGATE_BIND"]
    host, published, container = gateway["ports"][0].split(":")

    assert host == "127.0.0.1"
    assert published == "8000"
    assert container == bind.rsplit(":", 1)[1]
    assert f"127.0.0.1:{container}/readyz" in gateway["healthcheck"]["test"][-1]


def test_every_variable_is_in_env_example(compose, env_example):
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("RENTGATE_"):
                assert variable in env_example, f"{name}: {variable}"


def test_env_example_lists_every_setting(env_example):
    for field in Settings.model_fields:
        assert f"RENTGATE_{field.upper()}" in env_example


def test_env_example_defaults_are_the_settings_defaults(env_example):
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]

    assert env_example["RENTGATE_RATE_LIMIT"] == defaults.rate_limit
    assert env_example["RENTGATE_LOG_FORMAT"] == defaults.log_format
    assert int(env_example["RENTGATE_MAX_BODY_BYTES"]) == defaults.max_body_bytes
    assert float(env_example["RENTGATE_PROVIDER_DEADLINE"]) == (
        defaults.provider_deadline
    )


def test_compose_settings_are_valid_production_settings(compose):
    environment = {
        name.removeprefix("RENTGATE_").lower(): _expand(value)
        for name, value in compose["services"]["gateway"]["environment"].items()
        if name.startswith("RENTGATE_")
        and name
        not in ("RENTGATE_BIND", "RENTGATE_WORKERS", "RENTGATE_GRACEFUL_TIMEOUT")
    }

    settings = Settings(_env_file=None, **environment)  # type: ignore[call-arg]

    assert settings.env == "production"
    assert settings.debug is False
    assert settings.database_url.startswith("postgresql+psycopg://rentgate:")
    assert settings.database_url.endswith("@postgres:5432/rentgate")
    assert settings.redis_url == "redis://redis:6379/0"


def test_database_names_match_postgres_service(compose):
    postgres = compose["services"]["postgres"]["environment"]
    url = compose["services"]["gateway"]["environment"]["RENTGATE_DATABASE_URL"]

    assert f"//{postgres['POSTGRES_USER']}:" in url
    assert url.endswith(f"/{postgres['POSTGRES_DB']}")
    assert _expand(postgres["POSTGRES_PASSWORD"]) in _expand(url)


def test_stop_grace_exceeds_graceful_timeout(compose):
    gateway = compose["services"]["gateway"]
    grace = int(gateway["stop_grace_period"].removesuffix("s"))

    assert grace > int(gateway["environment"]["RENTGATE_GRACEFUL_TIMEOUT"])


def test_dockerfile_runs_gunicorn_with_config():
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert 'CMD ["gunicorn", "--config", "/app/gunicorn.conf.py"' in dockerfile
    assert "COPY migrations ./migrations" in dockerfile
    assert "USER rentgate" in dockerfile
    assert "HEALTHCHECK" in dockerfile
