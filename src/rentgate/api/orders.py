"""The three order routes kept from the original platform."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response

from rentgate.api.common import (
    idempotency_key,
    json_body,
    outcome_response,
    runtime,
    tenant_id,
)
from rentgate.auth import tenant_required
from rentgate.ordering import place_order
from rentgate.schemas import ROUTES, parse_order

bp = Blueprint("orders", __name__)


def _make_view(route: str) -> Callable[[], Response]:
    @tenant_required
    def view() -> Response:
        payload = json_body()
        key = idempotency_key()
        order = parse_order(route, payload)
        outcome = place_order(
            runtime(),
            tenant_id=tenant_id(),
            route=route,
            payload=payload,
            order=order,
            idempotency_key=key,
        )
        return outcome_response(outcome)

    view.__name__ = route
    return view


for _route in ROUTES:
    bp.add_url_rule(f"/{_route}", view_func=_make_view(_route), methods=["POST"])
