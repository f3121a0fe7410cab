"""The http provider against fake upstream responses from the responses library."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from rentgate.config import ProviderSettings
from rentgate.providers.base import (
    Deadline,
    ProviderBadResponse,
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderRequest,
    ProviderTimeout,
    ProviderUnavailable,
)
from rentgate.providers.http import HttpProvider
from tests.conftest import make_settings

BASE = "http://127.0.0.1:9"
LEASE_ID = "3f1e2d4c-0000-4000-8000-000000000001"


def make_provider(**options) -> HttpProvider:
    settings = make_settings(
        "sqlite://",
        provider_connect_timeout=1.5,
        provider_read_timeout=4.0,
        provider_deadline=6.0,
    )
    config = ProviderSettings(kind="http", base_url=BASE, options=options)
    return HttpProvider("gpu-farm", config, settings)


def make_request(action: str = "rent") -> ProviderRequest:
    return ProviderRequest(
        lease_id=LEASE_ID,
        tenant_id=7,
        offering="compute",
        kind="compute",
        action=action,
        quantity=4,
        hours=2,
        pool="a100-80gb",
        order={"resource_type": "compute", "quantity": 4, "hours": 2},
    )


def refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: refused")
    return requests.ConnectionError(MaxRetryError(None, BASE, reason))


@responses.activate
def test_submit_sends_order_json_and_lease_reference():
    responses.post(
        f"{BASE}/rent", json={"resource_id": "gpu-17", "zone": "b"}, status=201
    )

    result = make_provider().submit(make_request(), Deadline(6.0))

    assert result.resource_id == "gpu-17"
    assert result.details == {"zone": "b"}
    call = responses.calls[0]
    assert json.loads(call.request.body) == {
        "lease_id": LEASE_ID,
        "offering": "compute",
        "kind": "compute",
        "action": "rent",
        "quantity": 4,
        "hours": 2,
        "pool": "a100-80gb",
        "order": {"resource_type": "compute", "quantity": 4, "hours": 2},
    }
    assert call.request.headers["Idempotency-Key"] == LEASE_ID
    assert call.request.headers["Content-Type"] == "application/json"


@responses.activate
def test_submit_sends_session_headers_and_cookies():
    responses.post(
        f"{BASE}/rent",
        json={"resource_id": "gpu-1"},
        headers={"Set-Cookie": "route=b; Path=/"},
    )
    provider = make_provider()

    provider.submit(make_request(), Deadline(6.0))
    provider.submit(make_request(), Deadline(6.0))

    first, second = (call.request.headers for call in responses.calls)
    assert first["User-Agent"].startswith("python-requests/")
    assert first["Accept"] == "application/json"
    assert first["Connection"] == "keep-alive"
    assert "Cookie" not in first
    assert second["Cookie"] == "route=b"


@responses.activate
def test_health_check_sends_no_idempotency_key():
    responses.get(f"{BASE}/health", json={"status": "ok"})
    responses.post(f"{BASE}/rent", json={"resource_id": "gpu-1"})
    provider = make_provider()

    provider.check(Deadline(6.0))
    provider.submit(make_request(), Deadline(6.0))
    provider.check(Deadline(6.0))

    before, order, after = (call.request.headers for call in responses.calls)
    assert "Idempotency-Key" not in before
    assert order["Idempotency-Key"] == LEASE_ID
    assert "Idempotency-Key" not in after
    assert after["Accept"] == "application/json"


@responses.activate
def test_submit_uses_configured_timeouts():
    responses.post(f"{BASE}/train", json={"resource_id": "job-1"})

    make_provider().submit(make_request("train"), Deadline(6.0))

    connect, read = responses.calls[0].request.req_kwargs["timeout"]
    assert connect == 1.5
    assert read == 4.0


@responses.activate
def test_timeouts_shrink_to_remaining_deadline():
    responses.post(f"{BASE}/rent", json={"resource_id": "gpu-1"})

    make_provider().submit(make_request(), Deadline(0.5))

    connect, read = responses.calls[0].request.req_kwargs["timeout"]
    assert 0 < connect <= 0.5
    assert 0 < read <= 0.5


@responses.activate
def test_redirect_is_not_followed():
    responses.post(
        f"{BASE}/rent", status=302, headers={"Location": "http://127.0.0.1:1/x"}
    )

    with pytest.raises(ProviderBadResponse, match="redirect 302"):
        make_provider().submit(make_request(), Deadline(6.0))
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("answer", "error", "status", "fragment"),
    [
        pytest.param(
            {"body": refused()}, ProviderUnavailable, 503, "refused", id="refused"
        ),
        pytest.param(
            {"body": requests.ConnectTimeout("connect timed out")},
            ProviderUnavailable,
            503,
            "did not accept a connection",
            id="connect-timeout",
        ),
        pytest.param(
            {"body": requests.ReadTimeout("read timed out")},
            ProviderTimeout,
            504,
            "timed out",
            id="read-timeout",
        ),
        pytest.param(
            {
                "body": requests.ConnectionError(
                    ProtocolError("Connection reset by peer")
                )
            },
            ProviderOutcomeUnknown,
            504,
            "outcome is unknown",
            id="reset-after-send",
        ),
        pytest.param(
            {"status": 500, "json": {}},
            ProviderBadResponse,
            502,
            "status 500",
            id="5xx",
        ),
        pytest.param(
            {"status": 503, "json": {}},
            ProviderBadResponse,
            502,
            "status 503",
            id="503",
        ),
        pytest.param(
            {"status": 409, "json": {"error": "sold out"}},
            ProviderRejected,
            502,
            "rejected",
            id="4xx",
        ),
        pytest.param(
            {"status": 200, "body": "<html>oops</html>"},
            ProviderBadResponse,
            502,
            "not JSON",
            id="non-json",
        ),
        pytest.param(
            {"status": 200, "json": ["gpu-1"]},
            ProviderBadResponse,
            502,
            "not an object",
            id="json-list",
        ),
        pytest.param(
            {"status": 200, "json": {"id": "gpu-1"}},
            ProviderBadResponse,
            502,
            "valid resource_id",
            id="no-resource-id",
        ),
    ],
)
@responses.activate
def test_failure_maps_to_problem(answer, error, status, fragment):
    responses.post(f"{BASE}/rent", **answer)

    with pytest.raises(error) as caught:
        make_provider().submit(make_request(), Deadline(2.0))

    assert caught.value.status == status
    assert fragment in caught.value.detail
    assert "gpu-farm" in caught.value.detail


@responses.activate
def test_connect_failure_is_retried():
    responses.post(f"{BASE}/rent", body=refused())
    responses.post(f"{BASE}/rent", json={"resource_id": "gpu-2"})

    result = make_provider().submit(make_request(), Deadline(6.0))

    assert result.resource_id == "gpu-2"
    assert len(responses.calls) == 2


@responses.activate
def test_server_error_not_retried_without_reference():
    responses.post(f"{BASE}/rent", status=500, json={})

    with pytest.raises(ProviderBadResponse):
        make_provider().submit(make_request(), Deadline(6.0))

    assert len(responses.calls) == 1


@responses.activate
def test_server_error_retried_when_reference_honoured():
    responses.post(f"{BASE}/rent", status=500, json={})
    responses.post(f"{BASE}/rent", json={"resource_id": "gpu-3"})

    result = make_provider(honours_reference=True).submit(make_request(), Deadline(6.0))

    assert result.resource_id == "gpu-3"
    assert len(responses.calls) == 2


@responses.activate
def test_oversized_answer_is_rejected():
    responses.post(f"{BASE}/rent", body=b'{"resource_id": "' + b"x" * 2_000_000 + b'"}')

    with pytest.raises(ProviderBadResponse, match="exceeds 1048576 bytes"):
        make_provider().submit(make_request(), Deadline(6.0))


@responses.activate
def test_status_of_unknown_lease():
    responses.get(f"{BASE}/leases/{LEASE_ID}", status=404, json={})

    status = make_provider().status(LEASE_ID, Deadline(6.0))

    assert status.state == "unknown"


@responses.activate
def test_status_of_active_lease():
    responses.get(
        f"{BASE}/leases/{LEASE_ID}", json={"state": "active", "resource_id": "gpu-9"}
    )

    status = make_provider().status(LEASE_ID, Deadline(6.0))

    assert status.state == "active"
    assert status.resource_id == "gpu-9"


@responses.activate
def test_release_posts_lease_and_resource():
    responses.post(f"{BASE}/release", json={"released": True})

    make_provider().release(LEASE_ID, "gpu-9", Deadline(6.0))

    assert json.loads(responses.calls[0].request.body) == {
        "lease_id": LEASE_ID,
        "resource_id": "gpu-9",
    }
