"""One wall-clock deadline per provider call, against a real slow upstream."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import requests
from pydantic import ValidationError
from sqlalchemy import create_engine, select

from rentgate.config import ProviderSettings
from rentgate.models import Lease
from rentgate.providers.base import Deadline, ProviderRequest, ProviderTimeout
from rentgate.providers.http import HttpProvider, _Watch, _watchdog
from tests.conftest import make_settings
from tests.gateway_procs import Gateway, gateway_env, seed
from tests.slow_upstream import SlowUpstream, run_slow_upstream

DEADLINE = 2.0
SLOW_MODES = ["silent", "trickle_headers", "trickle_body"]


def provider_for(url: str, **options) -> HttpProvider:
    settings = make_settings(
        "sqlite://",
        provider_connect_timeout=1.0,
        provider_read_timeout=8.0,
        provider_deadline=DEADLINE,
    )
    config = ProviderSettings(kind="http", base_url=url, options=options)
    return HttpProvider("slow-farm", config, settings)


def order_request() -> ProviderRequest:
    return ProviderRequest(
        lease_id="00000000-0000-4000-8000-00000000d00d",
        tenant_id=1,
        offering="compute",
        kind="compute",
        action="rent",
        quantity=1,
        hours=1,
        pool=None,
        order={"resource_type": "compute", "quantity": 1},
    )


@pytest.mark.slow
@pytest.mark.parametrize("honours_reference", [False, True], ids=["plain", "reference"])
@pytest.mark.parametrize("mode", SLOW_MODES)
def test_slow_upstream_times_out_on_deadline(mode, honours_reference):
    with run_slow_upstream(mode) as upstream:
        provider = provider_for(upstream.url, honours_reference=honours_reference)
        started = time.monotonic()
        with pytest.raises(ProviderTimeout) as caught:
            provider.submit(order_request(), Deadline(DEADLINE))
        elapsed = time.monotonic() - started
        provider.close()

    assert DEADLINE - 0.1 <= elapsed <= DEADLINE + 1.0
    assert caught.value.status == 504
    assert caught.value.outcome_known is False
    # The socket read timeout shrinks to the time left, so it may fire just
    # before the watchdog does: both are the deadline passing.
    assert re.search(
        rf"within the {DEADLINE}s deadline|timed out on POST", caught.value.detail
    )
    # Each byte arrives before the 8 s read timeout, so only the deadline ends
    # the call, and no retry can start after it.
    assert upstream.requests[mode] == 1


class RecordingSocket:
    """A stand-in for a connection's socket that records when it was shut down."""

    def __init__(self) -> None:
        self.shut_at: float | None = None

    def shutdown(self, how: int) -> None:
        self.shut_at = time.monotonic()


def watched_socket(expires: float) -> tuple[_Watch, RecordingSocket]:
    """Register a watch on one fake connection and return both."""
    sock = RecordingSocket()
    watch = _watchdog.watch(expires)
    watch.add(SimpleNamespace(sock=sock))
    return watch, sock


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.01)
    return True


def exit_code_of(pid: int, timeout: float) -> int | None:
    """Return a child's exit code, or kill it and return None after ``timeout``."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_finished_watch_never_fires():
    watch, sock = watched_socket(time.monotonic() + 0.1)
    watch.finish()
    time.sleep(0.3)

    assert watch.fired is False
    assert sock.shut_at is None


def test_overlapping_watches_fire_at_own_deadline():
    start = time.monotonic()
    late, late_sock = watched_socket(start + 0.6)
    # The thread now sleeps until the late watch, so the early one must wake it.
    time.sleep(0.05)
    early, early_sock = watched_socket(start + 0.2)

    assert wait_until(lambda: early.fired, timeout=2.0)
    assert late.fired is False
    assert wait_until(lambda: late.fired, timeout=2.0)
    assert 0.2 <= early_sock.shut_at - start < 0.45
    assert 0.6 <= late_sock.shut_at - start < 0.85


@pytest.mark.slow
def test_overlapping_calls_end_at_own_deadline():
    # One byte every 0.2 s keeps the 8 s read timeout from ever firing, so
    # only the watchdog can end these calls.
    with run_slow_upstream("trickle_body", interval=0.2, max_bytes=100) as upstream:
        provider = provider_for(upstream.url)
        outcomes: dict[float, tuple[float, str]] = {}

        def call(seconds: float) -> None:
            started = time.monotonic()
            try:
                provider.submit(order_request(), Deadline(seconds))
            except ProviderTimeout as exc:
                outcomes[seconds] = (time.monotonic() - started, exc.detail)

        threads = [threading.Thread(target=call, args=(s,)) for s in (2.0, 1.0)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=10)
        provider.close()

    assert sorted(outcomes) == [1.0, 2.0]
    for seconds, (elapsed, detail) in outcomes.items():
        assert seconds - 0.1 <= elapsed <= seconds + 0.5, seconds
        assert "deadline" in detail, seconds
    assert upstream.requests["trickle_body"] == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_watchdog_restarts_in_forked_child():
    _watchdog.watch(time.monotonic() + 60).finish()
    parent_thread = _watchdog._thread
    assert parent_thread is not None

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            watch, sock = watched_socket(time.monotonic() + 0.1)
            fired = wait_until(lambda: sock.shut_at is not None, timeout=2.0)
            if fired and _watchdog._thread is not parent_thread:
                code = 0
        finally:
            os._exit(code)

    assert exit_code_of(pid, timeout=5.0) == 0


@pytest.fixture(scope="module")
def slow_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, SlowUpstream, str, str]]:
    """A two-worker gunicorn whose compute orders go to the slow upstream."""
    folder = tmp_path_factory.mktemp("deadline")
    url = f"sqlite:///{folder / 'rentgate.db'}"
    from rentgate.migrations import upgrade

    upgrade(url)
    key = seed(url)
    with run_slow_upstream("silent") as upstream:
        env = gateway_env(
            url,
            providers=(
                '{"local": {"kind": "local"}, '
                f'"slow-farm": {{"kind": "http", "base_url": "{upstream.url}"}}}}'
            ),
            offering_providers='{"compute": "slow-farm"}',
            provider_deadline=DEADLINE,
            provider_read_timeout=8,
            worker_timeout=10,
        )
        gateway = Gateway(env, folder / "gunicorn.log", workers=2)
        try:
            gateway.wait_ready()
            yield gateway, upstream, key, url
        finally:
            gateway.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", SLOW_MODES)
def test_gateway_answers_504_and_keeps_serving(slow_gateway, mode):
    gateway, upstream, key, url = slow_gateway
    upstream.mode = mode
    headers = {"Authorization": f"Bearer {key}"}
    slow: dict = {}

    def slow_order() -> None:
        started = time.monotonic()
        slow["response"] = requests.post(
            gateway.url + "/rent_resource",
            json={"resource_type": "compute", "quantity": 1},
            headers=headers,
            timeout=15,
        )
        slow["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=slow_order)
    thread.start()
    time.sleep(0.3)
    served = []
    while thread.is_alive() and len(served) < 5:
        started = time.monotonic()
        health = requests.get(gateway.url + "/healthz", timeout=5)
        data = requests.post(
            gateway.url + "/rent_resource",
            json={"resource_type": "data", "quantity": 1},
            headers=headers,
            timeout=5,
        )
        served.append(
            (health.status_code, data.status_code, time.monotonic() - started)
        )
        time.sleep(0.2)
    thread.join(timeout=15)

    response = slow["response"]
    assert response.status_code == 504
    assert slow["elapsed"] <= DEADLINE + 1.0
    problem = response.json()
    assert problem["title"] == "Provider timed out"
    assert "stays pending" in problem["detail"]
    assert len(served) >= 2
    for health_status, data_status, seconds in served:
        assert health_status == 200
        assert data_status == 201
        assert seconds < 1.0
    engine = create_engine(url)
    with engine.connect() as connection:
        state = connection.scalar(
            select(Lease.state).where(Lease.id == problem["lease_id"])
        )
    engine.dispose()
    assert state == "pending"


def test_deadline_below_worker_timeout():
    with pytest.raises(ValidationError, match="must be shorter than"):
        make_settings("sqlite://", provider_deadline=30.0, worker_timeout=30.0)

    settings = make_settings("sqlite://", provider_deadline=2.0, worker_timeout=10.0)
    assert settings.provider_deadline < settings.worker_timeout
