"""Lease routes: list, get, release and extend, for the caller's tenant only."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from rentgate.api.common import json_body, query_args, runtime, tenant_id, validate
from rentgate.auth import tenant_required
from rentgate.db import get_session
from rentgate.leases import (
    extend_lease,
    get_lease,
    lease_to_dict,
    list_leases,
    release_lease,
)

bp = Blueprint("leases", __name__)


class LeaseQuery(BaseModel):
    """Query string of ``GET /leases``."""

    model_config = ConfigDict(extra="forbid")

    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    per_page: Annotated[int, Field(ge=1, le=10_000)] | None = None
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
@tenant_required
def show(lease_id: str) -> Response:
    return jsonify(lease_to_dict(get_lease(get_session(), tenant_id(), lease_id)))


@bp.post("/leases/<lease_id>/release")
@tenant_required
def release(lease_id: str) -> Response:
    lease = release_lease(runtime(), tenant_id(), lease_id)
    return jsonify(lease_to_dict(lease))


@bp.post("/leases/<lease_id>/extend")
@tenant_required
def extend(lease_id: str) -> Response:
    body = validate(ExtendBody, json_body())
    lease = extend_lease(runtime(), tenant_id(), lease_id, body.hours)
    return jsonify(lease_to_dict(lease))
