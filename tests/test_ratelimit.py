"""Rate limits per API key: 429 problems, and one count shared by all workers."""

from __future__ import annotations

from collections import Counter
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
