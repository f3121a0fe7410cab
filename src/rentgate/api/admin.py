"""Admin routes: tenants, API keys, prices, capacity pools and costs."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from rentgate import openapi
from rentgate.accounting import catalog, costs, tenants
from rentgate.accounting.schemas import (
    CostCreate,
    CostList,
    CostOut,
    CostQuery,
    CreditLimitUpdate,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyOut,
    PoolCreate,
    PoolList,
    PoolOut,
    PoolResize,
    PriceCreate,
    PriceList,
    PriceOut,
    PriceQuery,
    TenantCreate,
    TenantList,
    TenantOut,
)
from rentgate.api.common import json_body, query_args, runtime, validate
from rentgate.auth import admin_required
from rentgate.db import get_session
from rentgate.pricing import current_price

bp = Blueprint("admin", __name__, url_prefix="/admin")

TAGS = ["admin"]


def _created(body: dict) -> Response:
    response = jsonify(body)
    response.status_code = 201
    return response


@bp.post("/tenants")
@openapi.operation(
    "Create a tenant",
    tags=TAGS,
    auth="admin",
    body=TenantCreate,
    responses={201: TenantOut, 409: "A tenant with this name exists."},
)
@admin_required
def create_tenant() -> Response:
    body = validate(TenantCreate, json_body())
    with runtime().transaction() as session:
        tenant = tenants.create_tenant(session, body)
        return _created(tenants.tenant_to_dict(tenant))


@bp.get("/tenants")
@openapi.operation("List tenants", tags=TAGS, auth="admin", responses={200: TenantList})
@admin_required
def list_tenants() -> Response:
    rows = tenants.list_tenants(get_session())
    return jsonify({"items": [tenants.tenant_to_dict(row) for row in rows]})


@bp.get("/tenants/<int:tenant_id>")
@openapi.operation("Get a tenant", tags=TAGS, auth="admin", responses={200: TenantOut})
@admin_required
def show_tenant(tenant_id: int) -> Response:
    return jsonify(tenants.tenant_to_dict(tenants.get_tenant(get_session(), tenant_id)))


@bp.put("/tenants/<int:tenant_id>/credit-limit")
@openapi.operation(
    "Set a tenant's monthly credit limit, this month included",
    tags=TAGS,
    auth="admin",
    body=CreditLimitUpdate,
    responses={
        200: TenantOut,
        409: "The tenant has already used more credit this month than the "
        "limit; errors names credit_limit.",
    },
)
@admin_required
def set_credit_limit(tenant_id: int) -> Response:
    body = validate(CreditLimitUpdate, json_body())
    with runtime().transaction() as session:
        tenant = tenants.get_tenant(session, tenant_id)
        tenants.set_credit_limit(session, tenant, body)
        return jsonify(tenants.tenant_to_dict(tenant))


@bp.post("/keys")
@openapi.operation(
    "Create an API key; the secret is returned only once",
    tags=TAGS,
    auth="admin",
    body=KeyCreate,
    responses={201: KeyCreated, 404: "The tenant does not exist."},
)
@admin_required
def create_key() -> Response:
    body = validate(KeyCreate, json_body())
    with runtime().transaction() as session:
        row, plain = tenants.create_api_key(session, body)
        return _created({**tenants.key_to_dict(row), "key": plain})


@bp.get("/keys")
@openapi.operation(
    "List API keys without their secrets",
    tags=TAGS,
    auth="admin",
    responses={200: KeyList},
)
@admin_required
def list_keys() -> Response:
    rows = tenants.list_api_keys(get_session())
    return jsonify({"items": [tenants.key_to_dict(row) for row in rows]})


@bp.post("/keys/<key_id_or_prefix>/revoke")
@openapi.operation(
    "Revoke an API key; requests with it get 401 from now on",
    tags=TAGS,
    description="Name the key by its numeric id or its 12-hex-digit prefix, "
    "both shown in the key list. Revoking a revoked key changes nothing.",
    auth="admin",
    responses={200: KeyOut, 404: "No key has this id or prefix."},
)
@admin_required
def revoke_key(key_id_or_prefix: str) -> Response:
    with runtime().transaction() as session:
        key = tenants.find_api_key(session, key_id_or_prefix)
        tenants.revoke_api_key(session, key)
        return jsonify(tenants.key_to_dict(key))


@bp.post("/prices")
@openapi.operation(
    "Set the price of an offering for orders placed from now on",
    tags=TAGS,
    auth="admin",
    body=PriceCreate,
    responses={201: PriceOut},
)
@admin_required
def set_price() -> Response:
    body = validate(PriceCreate, json_body())
    with runtime().transaction() as session:
        price = catalog.set_price(session, body)
        current = current_price(session, price.offering)
        return _created(
            catalog.price_to_dict(session, price, current.id if current else None)
        )


@bp.get("/prices")
@openapi.operation(
    "List prices, newest first per offering",
    tags=TAGS,
    auth="admin",
    query=PriceQuery,
    responses={200: PriceList},
)
@admin_required
def list_prices() -> Response:
    query = query_args(PriceQuery)
    return jsonify({"items": catalog.list_prices(get_session(), query.offering)})


@bp.post("/pools")
@openapi.operation(
    "Create a capacity pool",
    tags=TAGS,
    auth="admin",
    body=PoolCreate,
    responses={201: PoolOut, 409: "The offering already has a pool of this name."},
)
@admin_required
def create_pool() -> Response:
    body = validate(PoolCreate, json_body())
    with runtime().transaction() as session:
        pool = catalog.create_pool(session, body)
        return _created(catalog.pool_to_dict(pool))


@bp.get("/pools")
@openapi.operation(
    "List capacity pools", tags=TAGS, auth="admin", responses={200: PoolList}
)
@admin_required
def list_pools() -> Response:
    rows = catalog.list_pools(get_session())
    return jsonify({"items": [catalog.pool_to_dict(row) for row in rows]})


@bp.patch("/pools/<int:pool_id>")
@openapi.operation(
    "Resize a capacity pool or make it the offering's default",
    tags=TAGS,
    description="Both changes in one body apply in one transaction, or neither does.",
    auth="admin",
    body=PoolResize,
    responses={
        200: PoolOut,
        404: "The pool does not exist.",
        409: "More units are in use than the new capacity; errors names capacity.",
    },
)
@admin_required
def resize_pool(pool_id: int) -> Response:
    body = validate(PoolResize, json_body())
    with runtime().transaction() as session:
        pool = catalog.get_pool(session, pool_id)
        catalog.update_pool(session, pool, body)
        return jsonify(catalog.pool_to_dict(pool))


@bp.post("/costs")
@openapi.operation(
    "Record a cost: capital, operating, labour or a provider's charge for a lease",
    tags=TAGS,
    auth="admin",
    body=CostCreate,
    responses={201: CostOut, 404: "The lease of a provider cost does not exist."},
)
@admin_required
def add_cost() -> Response:
    body = validate(CostCreate, json_body())
    with runtime().transaction() as session:
        cost = costs.add_cost(session, body)
        return _created(costs.cost_to_dict(cost))


@bp.get("/costs")
@openapi.operation(
    "List costs by start month",
    tags=TAGS,
    auth="admin",
    query=CostQuery,
    responses={200: CostList},
)
@admin_required
def list_costs() -> Response:
    query = query_args(CostQuery)
    rows = costs.list_costs(get_session(), query.kind)
    return jsonify({"items": [costs.cost_to_dict(row) for row in rows]})
