"""Rate limits per API key: 429 problems, and one count shared by all workers."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from limits import parse
from limits.strategies import FixedWindowRateLimiter

from rentgate import create_app
from rentgate.ratelimit import ProcessCounters
from tests.conftest import make_settings
from tests.live_server import start_live_server


@pytest.fixture
def limited(database_url, seeded):
    app = create_app(make_settings(database_url, rate_limit="3/minute"))
    yield app.test_client()
    app.extensions["rentgate"].close()


def test_fourth_request_gets_429_problem(limited, seeded):
    statuses = [
        limited.get("/leases", headers=seeded.headers).status_code for _ in range(3)
    ]
    response = limited.get("/leases", headers=seeded.headers)
    body = response.get_json()

    assert statuses == [200, 200, 200]
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert body["type"].endswith("/rate-limited")
    assert body["status"] == 429
    assert "3 per 1 minute" in body["detail"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-Request-ID"]


def test_limit_counts_all_routes_of_a_key(limited, seeded):
    limited.get("/leases", headers=seeded.headers)
    limited.get("/leases/unknown", headers=seeded.headers)
    limited.post("/rent_resource", json={}, headers=seeded.headers)

    response = limited.get("/leases", headers=seeded.headers)

    assert response.status_code == 429


def test_other_key_has_its_own_count(limited, seeded):
    for _ in range(4):
        limited.get("/leases", headers=seeded.headers)

    response = limited.get("/leases", headers=seeded.other_headers)

    assert response.status_code == 200


def test_probes_and_docs_are_not_limited(limited, seeded):
    paths = ["/healthz", "/readyz", "/metrics", "/openapi.json"] * 3

    statuses = {limited.get(path, headers=seeded.headers).status_code for path in paths}

    assert statuses == {200}


def test_requests_without_key_limited_by_address(limited):
    statuses = [limited.get("/leases").status_code for _ in range(4)]

    assert statuses == [401, 401, 401, 429]


@pytest.mark.slow
def test_redis_count_shared_by_four_workers(tmp_path):
    server = start_live_server(
        tmp_path,
        workers=4,
        env={
            "RENTGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
            "RENTGATE_RATE_LIMIT": "20/minute",
        },
    )
    url = f"{server.base_url}/leases"

    def call(_: int) -> int:
        # A new connection per request lets the kernel hand it to any worker.
        with requests.Session() as session:
            return session.get(url, headers=server.headers, timeout=30).status_code

    try:
        server.wait_for_workers(4)
        with ThreadPoolExecutor(8) as pool:
            statuses = Counter(pool.map(call, range(60)))
    finally:
        server.stop()

    assert len(server.metric_writers()) == 4
    assert statuses == {200: 20, 429: 40}


def test_unreachable_redis_falls_back_to_memory(database_url, seeded):
    settings = make_settings(
        database_url, rate_limit="2/minute", redis_url="redis://127.0.0.1:1/0"
    )
    app = create_app(settings)
    client = app.test_client()

    statuses = [
        client.get("/leases", headers=seeded.headers).status_code for _ in range(3)
    ]
    app.extensions["rentgate"].close()

    assert statuses == [200, 200, 429]


def test_process_counters_restart_after_window(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("rentgate.ratelimit.time.time", lambda: clock[0])
    limiter = FixedWindowRateLimiter(ProcessCounters())
    limit = parse("2/second")

    first = [limiter.hit(limit, "bucket") for _ in range(3)]
    reset_time = limiter.get_window_stats(limit, "bucket").reset_time
    clock[0] += 1.0
    after = limiter.hit(limit, "bucket")

    assert first == [True, True, False]
    assert reset_time == 1001.0
    assert after is True
    assert limiter.get_window_stats(limit, "bucket").remaining == 1


def test_process_counters_sweep_quiet_buckets(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("rentgate.ratelimit.time.time", lambda: clock[0])
    counters = ProcessCounters()
    counters.SWEEP_EVERY = 10
    for number in range(5):
        counters.incr(f"quiet-{number}", 1)
    clock[0] += 2.0
    for _ in range(5):
        counters.incr("busy", 60)

    assert sorted(counters._counts) == ["busy"]
    assert counters.get("busy") == 5
    assert counters.get("quiet-0") == 0
    assert counters.get_expiry("quiet-0") == clock[0]


def test_made_up_keys_share_address_limit(limited):
    statuses = []
    for number in range(5):
        token = f"rg_{number:012x}_made-up-secret-{number}"
        headers = {"Authorization": f"Bearer {token}"}
        statuses.append(limited.get("/leases", headers=headers).status_code)
    response = limited.get(
        "/leases", headers={"Authorization": "Bearer rg_00000000000f_another"}
    )

    assert statuses == [401, 401, 401, 429, 429]
    assert response.status_code == 429
    assert "3 per 1 minute per client address" in response.get_json()["detail"]


def test_known_key_counts_by_key(limited, seeded):
    first = limited.get("/leases", headers=seeded.headers)
    for number in range(3):
        token = f"rg_{number:012x}_made-up-secret-{number}"
        limited.get("/leases", headers={"Authorization": f"Bearer {token}"})

    known = limited.get("/leases", headers=seeded.headers)

    assert first.status_code == 200
    assert known.status_code == 200


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never replies."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()
    for connection in accepted:
        connection.close()


def test_silent_redis_delays_little(database_url, seeded, silent_redis):
    settings = make_settings(
        database_url, rate_limit="100/second", redis_url=silent_redis
    )
    app = create_app(settings)
    client = app.test_client()

    elapsed = []
    for _ in range(10):
        started = time.monotonic()
        status = client.get("/leases", headers=seeded.headers).status_code
        elapsed.append((status, time.monotonic() - started))
    app.extensions["rentgate"].close()

    assert [status for status, _ in elapsed] == [200] * 10
    assert max(seconds for _, seconds in elapsed) < 1.0
    assert sum(seconds for _, seconds in elapsed) < 1.5
