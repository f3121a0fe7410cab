"""Prometheus metrics: requests, orders, provider calls, circuits, capacity, revenue.

Under gunicorn every worker is its own process, so ``prometheus_client`` runs
in multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` names a folder: each
worker writes its samples there, ``/metrics`` merges them, and gunicorn's
``child_exit`` hook marks a finished worker dead. The variable must be set
before ``prometheus_client`` is imported, which ``gunicorn.conf.py`` does.
Without it, as under the Flask test client, the metrics live in the process.

Capacity per pool is read from the database at scrape time, so every worker
and every instance reports the same numbers.

The order flow calls these metrics through decorators (``track_order``,
``track_provider_call``, ``track_activation``), one line per hooked function.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from rentgate import openapi
from rentgate.errors import RentgateError
from rentgate.money import from_minor

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)
provider_log = logging.getLogger("rentgate.providers.calls")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# pybreaker's state names, as a number a dashboard can plot and alert on.
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}

REQUESTS = Counter(
    "rentgate_http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)
REQUEST_LATENCY = Histogram(
    "rentgate_http_request_duration_seconds",
    "Time from the first request hook to the answer, by method and route.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
ORDERS = Counter(
    "rentgate_orders_total",
    "Orders by offering and outcome (success, replayed, or the problem slug).",
    ["offering", "outcome"],
)
PROVIDER_LATENCY = Histogram(
    "rentgate_provider_call_duration_seconds",
    "Provider submit calls, retries included, by provider and action.",
    ["provider", "action"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_FAILURES = Counter(
    "rentgate_provider_failures_total",
    "Failed provider submit calls by provider and problem slug.",
    ["provider", "reason"],
)
CIRCUIT_STATE = Gauge(
    "rentgate_provider_circuit_state",
    "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open. Each "
    "worker has its own breaker; the most open state of the live workers wins.",
    ["provider"],
    multiprocess_mode="livemax",
)
REVENUE = Counter(
    "rentgate_revenue_booked_total",
    "Charges booked when leases become active, in major currency units.",
    ["offering", "currency"],
)

bp = Blueprint("metrics", __name__)


class PoolCollector(Collector):
    """Reads used and free units of every capacity pool at scrape time."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from rentgate.models import CapacityPool

        used = GaugeMetricFamily(
            "rentgate_capacity_used_units",
            "Units reserved or in use, per capacity pool.",
            labels=["offering", "pool"],
        )
        free = GaugeMetricFamily(
            "rentgate_capacity_free_units",
            "Units free to order, per capacity pool.",
            labels=["offering", "pool"],
        )
        try:
            with self.runtime.read_sessions() as session:
                pools = session.scalars(select(CapacityPool)).all()
        except SQLAlchemyError as exc:
            log.warning("capacity metrics skipped, database failed: %s", exc)
            return
        for pool in pools:
            used.add_metric([pool.offering, pool.name], pool.used)
            free.add_metric([pool.offering, pool.name], pool.capacity - pool.used)
        yield used
        yield free


def render(runtime: Any) -> bytes:
    """Return the text exposition of every metric, merged across workers."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    pools = CollectorRegistry()
    pools.register(PoolCollector(runtime))
    return generate_latest(registry) + generate_latest(pools)


@bp.get("/metrics")
@openapi.operation(
    "Read Prometheus metrics",
    tags=["operations"],
    rate_limited=False,
    responses={200: "Metrics in the Prometheus text format."},
    response_media_type="text/plain",
)
def scrape() -> Response:
    body = render(current_app.extensions["rentgate"])
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Count and time every request by its route template, not its raw path."""

    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def record_request(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            elapsed = time.perf_counter() - started
            REQUEST_LATENCY.labels(request.method, route).observe(elapsed)
        return response


def track_order(place_order: F) -> F:
    """Count each order by offering and outcome; wraps ``place_order``."""
    from rentgate.schemas import OFFERING_OF

    @wraps(place_order)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        offering = OFFERING_OF.get(type(kwargs.get("order")), "unknown")
        try:
            outcome = place_order(*args, **kwargs)
        except RentgateError as exc:
            ORDERS.labels(offering, exc.slug).inc()
            raise
        except Exception:
            ORDERS.labels(offering, "error").inc()
            raise
        ORDERS.labels(offering, _order_outcome(outcome)).inc()
        return outcome

    return wrapper  # type: ignore[return-value]


def _order_outcome(outcome: Any) -> str:
    if outcome.replayed:
        return "replayed"
    if outcome.status < 400:
        return "success"
    slug = str(outcome.body.get("type", "")).rsplit("/", 1)[-1]
    return slug or str(outcome.status)


def track_provider_call(call_provider: F) -> F:
    """Time, count and log each submit; wraps ``call_provider``."""

    @wraps(call_provider)
    def wrapper(runtime: Any, provider_name: str, provider_request: Any) -> Any:
        started = time.perf_counter()
        status = "ok"
        try:
            return call_provider(runtime, provider_name, provider_request)
        except RentgateError as exc:
            status = exc.slug
            PROVIDER_FAILURES.labels(provider_name, exc.slug).inc()
            raise
        except Exception:
            status = "error"
            PROVIDER_FAILURES.labels(provider_name, "error").inc()
            raise
        finally:
            elapsed = time.perf_counter() - started
            action = provider_request.action
            PROVIDER_LATENCY.labels(provider_name, action).observe(elapsed)
            _record_circuit(runtime, provider_name)
            provider_log.info(
                "provider call provider=%s action=%s lease_id=%s status=%s",
                provider_name,
                action,
                provider_request.lease_id,
                status,
                extra={
                    "provider": provider_name,
                    "action": action,
                    "lease_id": provider_request.lease_id,
                    "status": status,
                    "elapsed_ms": round(elapsed * 1000, 1),
                },
            )

    return wrapper  # type: ignore[return-value]


def _record_circuit(runtime: Any, provider_name: str) -> None:
    breaker = runtime.providers.breakers.get(provider_name)
    if breaker is not None:
        state = CIRCUIT_STATES.get(breaker.current_state, 2)
        CIRCUIT_STATE.labels(provider_name).set(state)


def count_revenue(lease: Any) -> None:
    """Add the charge of a lease just activated to the revenue counter."""
    amount = from_minor(lease.amount_minor, lease.currency)
    REVENUE.labels(lease.offering, lease.currency).inc(float(amount))


def track_activation(activate: F) -> F:
    """Add a lease's charge to the revenue counter; wraps ``activate``.

    NOTE: the counter moves inside the settle transaction, so a rollback after
    that point over-counts. The ledger remains the record of revenue.
    """

    @wraps(activate)
    def wrapper(session: Any, lease: Any, *args: Any, **kwargs: Any) -> Any:
        activated = activate(session, lease, *args, **kwargs)
        if activated:
            count_revenue(lease)
        return activated

    return wrapper  # type: ignore[return-value]
