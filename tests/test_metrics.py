"""Prometheus metrics: request, order, provider, capacity and revenue series."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
import responses
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from rentgate import create_app
from tests.conftest import make_settings
from tests.live_server import migrate_and_seed, start_live_server

ORDER = {"resource_type": "compute", "quantity": 4, "hours": 2}
UPSTREAM = "http://127.0.0.1:9/provider"


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _scrape(text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _sample(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_order_moves_order_request_and_revenue_series(client, seeded):
    orders = _value("rentgate_orders_total", offering="compute", outcome="success")
    posts = _value(
        "rentgate_http_requests_total",
        method="POST",
        route="/rent_resource",
        status="201",
    )
    revenue = _value(
        "rentgate_revenue_booked_total", offering="compute", currency="USD"
    )

    response = client.post("/rent_resource", json=ORDER, headers=seeded.headers)

    assert response.status_code == 201
    assert (
        _value("rentgate_orders_total", offering="compute", outcome="success")
        == orders + 1
    )
    assert (
        _value(
            "rentgate_http_requests_total",
            method="POST",
            route="/rent_resource",
            status="201",
        )
        == posts + 1
    )
    booked = _value("rentgate_revenue_booked_total", offering="compute", currency="USD")
    assert Decimal(str(booked - revenue)).quantize(Decimal("0.01")) == Decimal("20.00")


def test_rejected_order_counts_outcome(client, seeded):
    before = _value(
        "rentgate_orders_total", offering="compute", outcome="unprocessable"
    )

    response = client.post(
        "/rent_resource",
        json={**ORDER, "gpu_model": "no-such-pool"},
        headers=seeded.headers,
    )

    assert response.status_code == 422
    after = _value("rentgate_orders_total", offering="compute", outcome="unprocessable")
    assert after == before + 1


def test_unknown_path_counts_as_unmatched(client):
    before = _value(
        "rentgate_http_requests_total", method="GET", route="unmatched", status="404"
    )

    client.get("/no/such/page")

    after = _value(
        "rentgate_http_requests_total", method="GET", route="unmatched", status="404"
    )
    assert after == before + 1


def test_latency_histogram_counts_requests(client):
    before = _value(
        "rentgate_http_request_duration_seconds_count", method="GET", route="/healthz"
    )

    client.get("/healthz")
    client.get("/healthz")

    after = _value(
        "rentgate_http_request_duration_seconds_count", method="GET", route="/healthz"
    )
    assert after == before + 2


def test_capacity_read_from_database(client, seeded):
    client.post("/rent_resource", json=ORDER, headers=seeded.headers)

    response = client.get("/metrics")
    samples = _scrape(response.get_data(as_text=True))

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    labels = {"offering": "compute", "pool": "standard"}
    assert _sample(samples, "rentgate_capacity_used_units", **labels) == 4
    assert _sample(samples, "rentgate_capacity_free_units", **labels) == 508
    assert (
        _sample(
            samples, "rentgate_capacity_free_units", offering="data", pool="imagenet-1k"
        )
        == 50
    )


@pytest.fixture
def remote_client(database_url):
    settings = make_settings(
        database_url,
        providers={
            "local": {"kind": "local"},
            "farm": {"kind": "http", "base_url": UPSTREAM},
        },
        offering_providers={"compute": "farm"},
        provider_retry_attempts=1,
    )
    app = create_app(settings)
    key = migrate_and_seed(database_url)
    yield app.test_client(), {"Authorization": f"Bearer {key}"}
    app.extensions["rentgate"].close()


@responses.activate
def test_provider_failure_and_latency_by_provider(remote_client):
    client, headers = remote_client
    responses.post(f"{UPSTREAM}/rent", status=500, json={"error": "down"})
    failures = _value(
        "rentgate_provider_failures_total",
        provider="farm",
        reason="provider-bad-answer",
    )
    calls = _value(
        "rentgate_provider_call_duration_seconds_count", provider="farm", action="rent"
    )

    response = client.post("/rent_resource", json=ORDER, headers=headers)

    assert response.status_code == 502
    assert (
        _value(
            "rentgate_provider_failures_total",
            provider="farm",
            reason="provider-bad-answer",
        )
        == failures + 1
    )
    assert (
        _value(
            "rentgate_provider_call_duration_seconds_count",
            provider="farm",
            action="rent",
        )
        == calls + 1
    )
    assert _value("rentgate_provider_circuit_state", provider="farm") == 0
    assert (
        _value(
            "rentgate_orders_total", offering="compute", outcome="provider-bad-answer"
        )
        >= 1
    )


@pytest.mark.slow
def test_counts_merge_across_gunicorn_workers(tmp_path):
    server = start_live_server(tmp_path, workers=2)
    order_url = f"{server.base_url}/rent_resource"
    try:
        server.wait_for_workers(2)
        with ThreadPoolExecutor(6) as pool:
            statuses = list(
                pool.map(
                    lambda _: (
                        requests.post(
                            order_url, json=ORDER, headers=server.headers, timeout=30
                        ).status_code
                    ),
                    range(12),
                )
            )
        scrapes = [
            _scrape(requests.get(f"{server.base_url}/metrics", timeout=10).text)
            for _ in range(6)
        ]
    finally:
        server.stop()

    assert statuses == [201] * 12
    assert len(server.metric_writers()) == 2
    for samples in scrapes:
        orders = _sample(
            samples, "rentgate_orders_total", offering="compute", outcome="success"
        )
        assert orders == 12
        assert (
            _sample(
                samples,
                "rentgate_http_requests_total",
                method="POST",
                route="/rent_resource",
                status="201",
            )
            == 12
        )
        assert (
            _sample(
                samples,
                "rentgate_capacity_used_units",
                offering="compute",
                pool="standard",
            )
            == 48
        )
        assert (
            _sample(
                samples,
                "rentgate_revenue_booked_total",
                offering="compute",
                currency="USD",
            )
            == 240.0
        )
