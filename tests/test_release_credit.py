"""Credit given back on release: only what the lease counted, to the right month."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select, update

from rentgate import admission
from rentgate.models import CreditPeriod, Lease, LedgerEntry
from rentgate.providers.base import ProviderUnavailable
from tests.conftest import Seeded


def rent(client, seeded: Seeded, hours: int) -> str:
    body = {"resource_type": "compute", "quantity": 1, "hours": hours}
    response = client.post("/rent_resource", json=body, headers=seeded.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["lease"]["id"]


def extend(client, seeded: Seeded, lease_id: str, hours: int) -> None:
    response = client.post(
        f"/leases/{lease_id}/extend", json={"hours": hours}, headers=seeded.headers
    )
    assert response.status_code == 200, response.get_json()


def release(client, seeded: Seeded, lease_id: str):
    return client.post(f"/leases/{lease_id}/release", headers=seeded.headers)


def set_limit(client, seeded: Seeded, limit: str | None) -> None:
    response = client.put(
        f"/admin/tenants/{seeded.tenant_id}/credit-limit",
        json={"credit_limit": limit},
        headers=seeded.admin_headers,
    )
    assert response.status_code == 200, response.get_json()


def in_month(monkeypatch: pytest.MonkeyPatch, period: str) -> None:
    monkeypatch.setattr(admission, "current_period", lambda: period)


def credit_used(runtime, tenant_id: int) -> dict[str, int]:
    with runtime.read_sessions() as session:
        rows = session.execute(
            select(CreditPeriod.period, CreditPeriod.used_minor).where(
                CreditPeriod.tenant_id == tenant_id
            )
        )
        return {period: used for period, used in rows}


def refunds(runtime, lease_id: str) -> list[int]:
    with runtime.read_sessions() as session:
        return list(
            session.scalars(
                select(LedgerEntry.amount_minor).where(
                    LedgerEntry.lease_id == lease_id, LedgerEntry.kind == "refund"
                )
            )
        )


def lease_state(runtime, lease_id: str) -> str:
    with runtime.read_sessions() as session:
        lease = session.get(Lease, lease_id)
        assert lease is not None
        return lease.state


def test_release_after_limit_set_then_extend(client, seeded, runtime, monkeypatch):
    in_month(monkeypatch, "2026-03")
    set_limit(client, seeded, None)
    lease_id = rent(client, seeded, hours=10)  # 10 h x 2.50 = 25.00, not counted
    set_limit(client, seeded, "100.00")
    extend(client, seeded, lease_id, 1)  # 2.50, counted in 2026-03
    assert credit_used(runtime, seeded.tenant_id) == {"2026-03": 250}

    response = release(client, seeded, lease_id)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["state"] == "released"
    # 11 h bought, 1 started: 10 h x 2.50 back in the ledger.
    assert refunds(runtime, lease_id) == [-2500]
    assert credit_used(runtime, seeded.tenant_id) == {"2026-03": 0}


def test_release_gives_credit_to_each_month(client, seeded, runtime, monkeypatch):
    in_month(monkeypatch, "2026-01")
    lease_id = rent(client, seeded, hours=10)  # 25.00 counted in 2026-01
    in_month(monkeypatch, "2026-02")
    extend(client, seeded, lease_id, 2)  # 5.00 counted in 2026-02

    response = release(client, seeded, lease_id)

    assert response.status_code == 200, response.get_json()
    # 11 h unused: the 2 h of the extension first, then 9 h of the order.
    assert refunds(runtime, lease_id) == [-2750]
    assert credit_used(runtime, seeded.tenant_id) == {"2026-01": 250, "2026-02": 0}


def test_release_skips_uncounted_extension(client, seeded, runtime, monkeypatch):
    in_month(monkeypatch, "2026-04")
    lease_id = rent(client, seeded, hours=10)  # 25.00 counted
    set_limit(client, seeded, None)
    extend(client, seeded, lease_id, 10)  # 25.00, not counted

    response = release(client, seeded, lease_id)

    assert response.status_code == 200, response.get_json()
    # 19 h unused: the 10 uncounted hours of the extension give back no credit,
    # 9 h of the order give back 22.50 of its 25.00.
    assert refunds(runtime, lease_id) == [-4750]
    assert credit_used(runtime, seeded.tenant_id) == {"2026-04": 250}


def test_release_credit_never_below_zero(client, seeded, runtime, monkeypatch):
    in_month(monkeypatch, "2026-05")
    lease_id = rent(client, seeded, hours=10)
    # A month row that already lost the lease's credit, as a lease extended
    # before credit was tracked per extension can leave it.
    with runtime.transaction() as session:
        session.execute(update(CreditPeriod).values(used_minor=100))

    response = release(client, seeded, lease_id)

    assert response.status_code == 200, response.get_json()
    assert refunds(runtime, lease_id) == [-2250]
    assert credit_used(runtime, seeded.tenant_id) == {"2026-05": 0}


def test_release_commits_before_provider_call(client, seeded, runtime, monkeypatch):
    lease_id = rent(client, seeded, hours=4)
    provider = runtime.providers.get("local")
    seen: list[str] = []
    original = provider.release

    def recording_release(lease: str, resource_id: str, deadline) -> None:
        seen.append(lease_state(runtime, lease))
        original(lease, resource_id, deadline)

    monkeypatch.setattr(provider, "release", recording_release)

    response = release(client, seeded, lease_id)

    assert response.status_code == 200
    assert seen == ["released"]


def test_release_not_active_skips_provider(client, seeded, runtime, monkeypatch):
    lease_id = rent(client, seeded, hours=4)
    assert release(client, seeded, lease_id).status_code == 200
    provider = runtime.providers.get("local")
    calls: list[str] = []
    monkeypatch.setattr(provider, "release", lambda lease, *args: calls.append(lease))

    again = release(client, seeded, lease_id)

    assert again.status_code == 422
    assert calls == []


def test_release_survives_provider_failure(
    client, seeded, runtime, monkeypatch, caplog
):
    lease_id = rent(client, seeded, hours=4)
    provider = runtime.providers.get("local")

    def failing_release(lease: str, resource_id: str, deadline) -> None:
        raise ProviderUnavailable("Provider 'local' is unreachable.")

    monkeypatch.setattr(provider, "release", failing_release)

    with caplog.at_level(logging.WARNING, logger="rentgate.leases"):
        response = release(client, seeded, lease_id)

    assert response.status_code == 200
    assert response.get_json()["state"] == "released"
    assert lease_state(runtime, lease_id) == "released"
    assert refunds(runtime, lease_id) == [-750]
    assert f"lease_id={lease_id}" in caplog.text
    assert "unreachable" in caplog.text


def test_extension_credit_hidden_from_api(client, seeded, runtime):
    lease_id = rent(client, seeded, hours=2)
    extend(client, seeded, lease_id, 1)

    rendered = client.get(f"/leases/{lease_id}", headers=seeded.headers).get_json()

    assert "extension_credit" not in rendered["details"]
    assert rendered["pool"] == "standard"
    with runtime.read_sessions() as session:
        lease = session.get(Lease, lease_id)
        assert lease is not None
        assert lease.details["extension_credit"] == [
            {"period": admission.current_period(), "amount_minor": 250}
        ]
