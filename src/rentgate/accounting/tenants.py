"""Tenants, their API keys and their monthly credit."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rentgate import admission
from rentgate.accounting.common import iso, money, parse_minor
from rentgate.accounting.schemas import CreditLimitUpdate, KeyCreate, TenantCreate
from rentgate.auth import create_key
from rentgate.errors import Conflict, NotFound, Unprocessable
from rentgate.models import ApiKey, Tenant, utcnow

log = logging.getLogger(__name__)

# Ids are INTEGER columns, 32-bit on PostgreSQL, so a larger number is no id.
MAX_KEY_ID = 2_147_483_647


def tenant_to_dict(tenant: Tenant) -> dict[str, Any]:
    """Render a tenant for the API, its limit as a decimal string or null."""
    limit = tenant.credit_limit_minor
    return {
        "id": tenant.id,
        "name": tenant.name,
        "credit_limit": None if limit is None else money(limit, tenant.credit_currency),
        "currency": tenant.credit_currency,
        "created_at": iso(tenant.created_at),
    }


def key_to_dict(key: ApiKey) -> dict[str, Any]:
    """Render a key without its secret, which is never stored."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "role": key.role,
        "tenant_id": key.tenant_id,
        "label": key.label,
        "created_at": iso(key.created_at),
        "revoked_at": iso(key.revoked_at),
    }


def get_tenant(session: Session, tenant_id: int) -> Tenant:
    """Return the tenant or raise 404."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"Tenant {tenant_id} not found; list tenants to find its id.")
    return tenant


def find_tenant(session: Session, name: str) -> Tenant:
    """Return the tenant called ``name`` or raise 404."""
    tenant = session.scalars(select(Tenant).where(Tenant.name == name)).first()
    if tenant is None:
        raise NotFound(f"Tenant '{name}' not found; list tenants to see the names.")
    return tenant


def create_tenant(session: Session, body: TenantCreate) -> Tenant:
    """Insert a tenant, or raise 409 if the name is taken."""
    taken = session.scalars(select(Tenant.id).where(Tenant.name == body.name)).first()
    if taken is not None:
        raise Conflict(
            f"Tenant '{body.name}' already exists with id {taken}; choose another name."
        )
    limit = None
    if body.credit_limit is not None:
        limit = parse_minor(body.credit_limit, body.currency, "credit_limit")
    tenant = Tenant(
        name=body.name, credit_limit_minor=limit, credit_currency=body.currency
    )
    session.add(tenant)
    session.flush()
    log.info("tenant created tenant_id=%s", tenant.id)
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    """Return every tenant by id."""
    return list(session.scalars(select(Tenant).order_by(Tenant.id)).all())


def set_credit_limit(
    session: Session, tenant: Tenant, body: CreditLimitUpdate
) -> Tenant:
    """Change the tenant's monthly credit limit from now on, this month included."""
    limit = None
    if body.credit_limit is not None:
        limit = parse_minor(body.credit_limit, tenant.credit_currency, "credit_limit")
    try:
        admission.set_credit_limit(session, tenant, limit)
    except Conflict as exc:
        # admission.set_credit_limit raises Conflict only for a limit below
        # the credit already used this month.
        if exc.errors is None:
            exc.errors = [
                {
                    "field": "credit_limit",
                    "message": "below the credit already used this month",
                    "type": "limit_below_used",
                }
            ]
        raise
    log.info("credit limit set tenant_id=%s limit_minor=%s", tenant.id, limit)
    return tenant


def credit_to_dict(session: Session, tenant: Tenant) -> dict[str, Any]:
    """Render this month's limit, used and remaining credit of a tenant."""
    period, used, limit = admission.credit_status(session, tenant)
    currency = tenant.credit_currency
    return {
        "period": period,
        "currency": currency,
        "limit": None if limit is None else money(limit, currency),
        "used": money(used, currency),
        "remaining": None if limit is None else money(max(0, limit - used), currency),
    }


def create_api_key(session: Session, body: KeyCreate) -> tuple[ApiKey, str]:
    """Insert a key and return it with its plain text, which is shown only once."""
    if body.role == "tenant" and body.tenant_id is None:
        raise Unprocessable(
            "Field 'tenant_id' is missing: a tenant key needs the tenant's id; "
            "send tenant_id, or role 'admin' for an admin key.",
            errors=[{"field": "tenant_id", "message": "missing", "type": "missing"}],
        )
    if body.role == "admin" and body.tenant_id is not None:
        raise Unprocessable(
            "Field 'tenant_id' must be absent for an admin key, which belongs to "
            "no tenant; drop tenant_id or use role 'tenant'.",
            errors=[{"field": "tenant_id", "message": "not allowed", "type": "extra"}],
        )
    if body.tenant_id is not None:
        get_tenant(session, body.tenant_id)
    row, plain = create_key(
        session, role=body.role, tenant_id=body.tenant_id, label=body.label
    )
    log.info("api key created key_id=%s tenant_id=%s", row.id, row.tenant_id)
    return row, plain


def list_api_keys(session: Session, tenant_id: int | None = None) -> list[ApiKey]:
    """Return keys by id, only one tenant's when ``tenant_id`` is given."""
    query = select(ApiKey).order_by(ApiKey.id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return list(session.scalars(query).all())


def find_api_key(session: Session, reference: str) -> ApiKey:
    """Return the key with this numeric id or public prefix, or raise 404.

    Prefixes are 12 hex digits, so a shorter run of decimal digits is an id.
    """
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == reference)).first()
    is_id = reference.isascii() and reference.isdecimal() and len(reference) < 12
    if key is None and is_id and int(reference) <= MAX_KEY_ID:
        key = session.get(ApiKey, int(reference))
    if key is None:
        raise NotFound(
            f"API key '{reference}' not found; give its id or prefix from the key list."
        )
    return key


def revoke_api_key(session: Session, key: ApiKey) -> ApiKey:
    """Revoke a key; the next request with it gets 401. Revoking twice is a no-op."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
        log.info("api key revoked key_id=%s", key.id)
    return key
