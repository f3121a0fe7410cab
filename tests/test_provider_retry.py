"""When the http provider retries: only if the order cannot be duplicated."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import requests
import responses
import tenacity.nap
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from rentgate.config import ProviderSettings
from rentgate.providers.base import (
    Deadline,
    ProviderBadResponse,
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRequest,
    ProviderTimeout,
    ProviderUnavailable,
)
from rentgate.providers.http import HttpProvider
from tests.conftest import make_settings
from tests.gateway_procs import free_port
from tests.slow_upstream import run_slow_upstream

BASE = "http://127.0.0.1:9"


def provider_for(
    url: str = BASE, deadline: float = 5.0, attempts: int = 3, **options
) -> HttpProvider:
    settings = make_settings(
        "sqlite://",
        provider_connect_timeout=1.0,
        provider_read_timeout=2.0,
        provider_deadline=deadline,
        provider_retry_attempts=attempts,
    )
    config = ProviderSettings(kind="http", base_url=url, options=options)
    return HttpProvider("retry-farm", config, settings)


def order_request() -> ProviderRequest:
    return ProviderRequest(
        lease_id="00000000-0000-4000-8000-0000000000aa",
        tenant_id=1,
        offering="compute",
        kind="compute",
        action="rent",
        quantity=1,
        hours=1,
        pool=None,
        order={"resource_type": "compute", "quantity": 1},
    )


def refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: refused")
    return requests.ConnectionError(MaxRetryError(None, BASE, reason))


def reset() -> requests.ConnectionError:
    return requests.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )


FAILURES = [
    pytest.param(refused, ProviderUnavailable, 3, 3, id="connect-refused"),
    pytest.param(
        lambda: requests.ConnectTimeout("connect timed out"),
        ProviderUnavailable,
        3,
        3,
        id="connect-timeout",
    ),
    pytest.param(
        lambda: requests.ReadTimeout("read timed out"),
        ProviderTimeout,
        1,
        3,
        id="read-timeout",
    ),
    pytest.param(reset, ProviderOutcomeUnknown, 1, 3, id="connection-reset"),
]


@responses.activate
@pytest.mark.parametrize(("make_error", "error", "plain", "reference"), FAILURES)
def test_retry_count_per_failure(make_error, error, plain, reference):
    for honours_reference, expected_calls in ((False, plain), (True, reference)):
        responses.reset()
        responses.post(f"{BASE}/rent", body=make_error())
        provider = provider_for(honours_reference=honours_reference)

        with pytest.raises(error):
            provider.submit(order_request(), Deadline(5.0))

        assert len(responses.calls) == expected_calls, honours_reference
        sent = [call.request.headers["Idempotency-Key"] for call in responses.calls]
        assert set(sent) == {order_request().lease_id}


@responses.activate
def test_server_error_retried_only_with_reference():
    responses.post(f"{BASE}/rent", status=503, json={"error": "busy"})

    with pytest.raises(ProviderBadResponse):
        provider_for().submit(order_request(), Deadline(5.0))
    plain_calls = len(responses.calls)
    with pytest.raises(ProviderBadResponse):
        provider_for(honours_reference=True).submit(order_request(), Deadline(5.0))

    assert plain_calls == 1
    assert len(responses.calls) - plain_calls == 3


@responses.activate
def test_rejection_never_retried():
    responses.post(f"{BASE}/rent", status=409, json={"error": "no GPUs"})

    with pytest.raises(ProviderError) as caught:
        provider_for(honours_reference=True).submit(order_request(), Deadline(5.0))

    assert caught.value.status == 502
    assert caught.value.extra["upstream_status"] == 409
    assert len(responses.calls) == 1


@responses.activate
def test_backoff_has_jitter(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=waits.append))
    responses.post(f"{BASE}/rent", body=refused())

    for _ in range(10):
        with pytest.raises(ProviderUnavailable):
            provider_for().submit(order_request(), Deadline(5.0))

    assert len(waits) == 20  # two waits between three attempts, ten times
    assert all(0 <= wait <= 1.0 for wait in waits)
    assert len(set(waits)) > 10


@responses.activate
def test_backoff_stays_inside_deadline():
    def slow_refusal(request):
        time.sleep(0.3)
        raise refused()

    responses.add_callback(responses.POST, f"{BASE}/rent", callback=slow_refusal)
    provider = provider_for(deadline=1.0, attempts=10)
    started = time.monotonic()

    with pytest.raises(ProviderError):
        provider.submit(order_request(), Deadline(1.0))

    assert time.monotonic() - started < 1.0 + 0.35
    assert 2 <= len(responses.calls) <= 4


@responses.activate
def test_concurrent_calls_count_own_attempts():
    def slow_refusal(request):
        time.sleep(0.02)
        raise refused()

    responses.add_callback(responses.POST, f"{BASE}/rent", callback=slow_refusal)
    provider = provider_for()
    errors: list[ProviderError] = []

    def order() -> None:
        try:
            provider.submit(order_request(), Deadline(5.0))
        except ProviderError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=order) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(errors) == 8
    assert all(isinstance(error, ProviderUnavailable) for error in errors)
    assert len(responses.calls) == 8 * 3


@pytest.mark.parametrize(
    ("mode", "error", "plain", "reference"),
    [
        pytest.param("reset", ProviderOutcomeUnknown, 1, 3, id="reset"),
        pytest.param("error", ProviderBadResponse, 1, 3, id="server-error"),
    ],
)
def test_real_server_retry_counts(mode, error, plain, reference):
    for honours_reference, expected in ((False, plain), (True, reference)):
        with run_slow_upstream(mode) as upstream:
            provider = provider_for(upstream.url, honours_reference=honours_reference)
            with pytest.raises(error):
                provider.submit(order_request(), Deadline(5.0))
            provider.close()

        assert upstream.requests[mode] == expected, honours_reference


def test_real_refused_port_retried_then_503():
    provider = provider_for(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()

    with pytest.raises(ProviderUnavailable) as caught:
        provider.submit(order_request(), Deadline(5.0))

    assert caught.value.status == 503
    assert caught.value.retry_after == 5
    assert caught.value.outcome_known is True
    assert "refused the connection" in caught.value.detail
    assert time.monotonic() - started < 3.0


def test_real_server_success_after_reference_retry():
    with run_slow_upstream("reset") as upstream:
        provider = provider_for(upstream.url, honours_reference=True)
        with pytest.raises(ProviderOutcomeUnknown):
            provider.submit(order_request(), Deadline(5.0))
        upstream.mode = "ok"
        result = provider.submit(order_request(), Deadline(5.0))
        provider.close()

    assert result.resource_id == "slow-1"
    assert upstream.requests == {"reset": 3, "ok": 1}
