"""The three order routes kept from the original platform."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response

from rentgate import fastpath, openapi
from rentgate.api.common import (
    idempotency_key,
    json_body,
    outcome_response,
    runtime,
    tenant_id,
)
from rentgate.auth import authenticate_tenant, pending_key
from rentgate.ordering import place_order
from rentgate.schemas import ROUTES, OrderOut, parse_order

bp = Blueprint("orders", __name__)


ORDER_ERRORS = {
    402: "The order would pass the tenant's monthly credit limit.",
    409: "Too few free units in the pool, or the Idempotency-Key is still running.",
    422: "A field is invalid, the pool is unknown or the offering has no price.",
    502: "The provider rejected the order or sent an invalid answer.",
    503: "The provider or the database is unavailable; see Retry-After.",
    504: "The provider timed out; the lease stays pending until reconciled.",
}
LOCATION = {"Location": {"description": "URL of the new lease.", "schema": {}}}


def _make_view(route: str) -> Callable[[], Response]:
    @openapi.operation(
        f"Order through /{route}",
        tags=["orders"],
        auth="tenant",
        body=ROUTES[route][1],
        body_name="".join(part.title() for part in route.split("_")) + "Body",
        idempotency_key=True,
        responses={201: OrderOut, **ORDER_ERRORS},
        response_headers={201: LOCATION},
    )
    def view() -> Response:
        # On PostgreSQL the admission statement checks a key that this worker
        # has authenticated before, which saves a round trip, and pending_key
        # checks any other key at once. An error found before admission waits
        # for a full check of the key, so a bad key always gets 401 or 403.
        key = pending_key() if fastpath.enabled(runtime().engine) else None
        if key is None:
            authenticate_tenant()
        try:
            payload = json_body()
            claim_key = idempotency_key()
            order = parse_order(route, payload)
        except Exception:
            if key is not None:
                key.tenant_id()
            raise
        outcome = place_order(
            runtime(),
            tenant_id=tenant_id() if key is None else None,
            key=key,
            route=route,
            payload=payload,
            order=order,
            idempotency_key=claim_key,
        )
        return outcome_response(outcome)

    view.__name__ = route
    return view


for _route in ROUTES:
    bp.add_url_rule(f"/{_route}", view_func=_make_view(_route), methods=["POST"])
