"""Settings: defaults, environment parsing and start-up errors naming the setting."""

from __future__ import annotations

import pytest

from rentgate.config import SettingsError, load_settings


@pytest.fixture(autouse=True)
def outside_checkout(monkeypatch, tmp_path):
    """Run from an empty folder, so that no developer's .env file is read."""
    monkeypatch.chdir(tmp_path)


def test_defaults_use_sqlite_and_local():
    settings = load_settings()

    assert settings.database_url == "sqlite:///var/rentgate.db"
    assert settings.provider_for("custom_training") == "local"
    assert settings.provider_deadline < settings.worker_timeout


def test_offering_mapped_from_environment(monkeypatch):
    monkeypatch.setenv(
        "RENTGATE_PROVIDERS",
        '{"local": {"kind": "local"}, "farm": {"kind": "http", "base_url": "http://127.0.0.1:8080"}}',
    )
    monkeypatch.setenv("RENTGATE_OFFERING_PROVIDERS", '{"custom_training": "farm"}')

    settings = load_settings()

    assert settings.provider_for("custom_training") == "farm"
    assert settings.provider_for("platform_training") == "local"
    assert str(settings.providers["farm"].base_url) == "http://127.0.0.1:8080/"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param(
            {"RENTGATE_ENV": "production", "RENTGATE_DEBUG": "true"},
            "RENTGATE_DEBUG must be false when RENTGATE_ENV is production",
            id="debug-in-production",
        ),
        pytest.param(
            {"RENTGATE_PROVIDER_DEADLINE": "40"},
            "RENTGATE_PROVIDER_DEADLINE (40.0s) must be shorter than "
            "RENTGATE_WORKER_TIMEOUT (30.0s)",
            id="deadline-over-worker-timeout",
        ),
        pytest.param(
            {"RENTGATE_OFFERING_PROVIDERS": '{"data": "nowhere"}'},
            "maps 'data' to provider 'nowhere'",
            id="unknown-provider",
        ),
        pytest.param(
            {"RENTGATE_OFFERING_PROVIDERS": '{"gpus": "local"}'},
            "unknown offering 'gpus'",
            id="unknown-offering",
        ),
        pytest.param(
            {"RENTGATE_PAGE_SIZE_MAX": "many"},
            "RENTGATE_PAGE_SIZE_MAX: Input should be a valid integer",
            id="not-a-number",
        ),
    ],
)
def test_invalid_setting_is_named(monkeypatch, variables, message):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert message in str(caught.value)


def test_http_provider_without_base_url_fails(monkeypatch, tmp_path):
    from rentgate import create_app

    monkeypatch.setenv("RENTGATE_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.setenv(
        "RENTGATE_PROVIDERS", '{"local": {"kind": "local"}, "farm": {"kind": "http"}}'
    )

    with pytest.raises(
        ValueError, match="provider 'farm' of kind http needs a base_url"
    ):
        create_app()


def test_unknown_provider_kind_fails(monkeypatch, tmp_path):
    from rentgate import create_app

    monkeypatch.setenv("RENTGATE_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.setenv(
        "RENTGATE_PROVIDERS",
        '{"local": {"kind": "local"}, "farm": {"kind": "carrier-pigeon"}}',
    )

    with pytest.raises(ValueError, match="unknown kind 'carrier-pigeon'"):
        create_app()
