"""Lease routes: list, get, release and extend, for the caller's tenant only."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from rentgate import openapi
from rentgate.api.common import (
    idempotency_key,
    json_body,
    outcome_response,
    query_args,
    runtime,
    tenant_id,
    validate,
)
from rentgate.auth import tenant_required
from rentgate.db import get_session
from rentgate.leases import (
    extend_lease,
    get_lease,
    lease_to_dict,
    list_leases,
    release_lease,
)
from rentgate.ordering import lease_action_once
from rentgate.schemas import LeaseOut, LeasePage

bp = Blueprint("leases", __name__)

DATABASE_DOWN = "The database is busy or unreachable; see Retry-After."
NOT_ACTIVE = "The lease is not active, or a field of the body is invalid."


class LeaseQuery(BaseModel):
    """Query string of ``GET /leases``."""

    model_config = ConfigDict(extra="forbid")

    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    # Larger values are clamped to RENTGATE_PAGE_SIZE_MAX, not rejected.
    per_page: Annotated[int, Field(ge=1)] | None = None
    state: Literal["pending", "active", "released", "expired", "failed"] | None = None
    offering: (
        Literal[
            "compute",
            "data",
            "platform_training",
            "platform_inference",
            "custom_optimization",
            "custom_training",
        ]
        | None
    ) = None


class ExtendBody(BaseModel):
    """Body of ``POST /leases/<id>/extend``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    hours: Annotated[StrictInt, Field(ge=1, le=8760)]


@bp.get("/leases")
@openapi.operation(
    "List the tenant's leases, newest first",
    tags=["leases"],
    auth="tenant",
    query=LeaseQuery,
    responses={200: LeasePage, 503: DATABASE_DOWN},
)
@tenant_required
def index() -> Response:
    query = query_args(LeaseQuery)
    settings = runtime().settings
    per_page = min(query.per_page or settings.page_size_default, settings.page_size_max)
    rows, total = list_leases(
        get_session(),
        tenant_id(),
        page=query.page,
        per_page=per_page,
        state=query.state,
        offering=query.offering,
    )
    return jsonify(
        {
            "items": [lease_to_dict(lease) for lease in rows],
            "page": query.page,
            "per_page": per_page,
            "total": total,
        }
    )


@bp.get("/leases/<lease_id>")
@openapi.operation(
    "Get one lease",
    tags=["leases"],
    auth="tenant",
    responses={200: LeaseOut, 503: DATABASE_DOWN},
)
@tenant_required
def show(lease_id: str) -> Response:
    return jsonify(lease_to_dict(get_lease(get_session(), tenant_id(), lease_id)))


@bp.post("/leases/<lease_id>/release")
@openapi.operation(
    "Release an active lease early",
    tags=["leases"],
    auth="tenant",
    idempotency_key=True,
    # The lease ends before the provider is called, and a provider failure
    # after that is only logged, so no provider status reaches the client.
    responses={200: LeaseOut, 422: NOT_ACTIVE, 503: DATABASE_DOWN},
)
@tenant_required
def release(lease_id: str) -> Response:
    rt, tenant = runtime(), tenant_id()
    outcome = lease_action_once(
        rt,
        tenant_id=tenant,
        route="release",
        lease_id=lease_id,
        payload={"lease_id": lease_id},
        idempotency_key=idempotency_key(),
        action=lambda claim: release_lease(rt, tenant, lease_id, claim=claim),
    )
    return outcome_response(outcome)


@bp.post("/leases/<lease_id>/extend")
@openapi.operation(
    "Extend an active lease priced per unit-hour",
    tags=["leases"],
    auth="tenant",
    body=ExtendBody,
    idempotency_key=True,
    responses={
        200: LeaseOut,
        402: "The extension would pass the monthly credit limit.",
        422: NOT_ACTIVE,
        503: DATABASE_DOWN,
    },
)
@tenant_required
def extend(lease_id: str) -> Response:
    payload = json_body()
    body = validate(ExtendBody, payload)
    rt, tenant = runtime(), tenant_id()
    outcome = lease_action_once(
        rt,
        tenant_id=tenant,
        route="extend",
        lease_id=lease_id,
        payload={"lease_id": lease_id, **payload},
        idempotency_key=idempotency_key(),
        action=lambda claim: extend_lease(
            rt, tenant, lease_id, body.hours, claim=claim
        ),
    )
    return outcome_response(outcome)
