"""API keys: generation, hashed storage and the checks on each request.

A key reads ``rg_<prefix>_<secret>``. The prefix finds the stored row; the
SHA-256 hash of the whole key is compared in constant time. Keys carry 256 bits
of randomness, so a fast hash is enough and no key stretching is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from rentgate import fastpath
from rentgate.db import request_connection, single_statement_session
from rentgate.errors import Forbidden, Unauthorized
from rentgate.models import ApiKey

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Caller:
    """The authenticated key: its id, role and tenant."""

    key_id: int
    role: str
    tenant_id: int | None


def hash_key(key: str) -> str:
    """Return the hex SHA-256 of ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    session: Session, *, role: str, tenant_id: int | None, label: str = ""
) -> tuple[ApiKey, str]:
    """Insert a new key and return the row and the plain key, shown only once."""
    prefix = secrets.token_hex(6)
    plain = f"rg_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        role=role,
        tenant_id=tenant_id,
        prefix=prefix,
        key_hash=hash_key(plain),
        label=label,
    )
    session.add(row)
    session.flush()
    return row, plain


def resolve_key(session: Session, plain: str) -> Caller | None:
    """Return the caller for ``plain``, or None if unknown or revoked."""
    prefix = key_prefix(plain)
    if prefix is None:
        return None
    # Selecting columns rather than the ApiKey entity skips the ORM's identity
    # map and attribute set-up, which cost more than the query on a fast link.
    row = session.execute(
        select(ApiKey.id, ApiKey.role, ApiKey.tenant_id, ApiKey.key_hash).where(
            ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)
        )
    ).first()
    return _caller(row, plain)


def key_prefix(plain: str) -> str | None:
    """Return the public prefix of a key, or None if it is not shaped like one."""
    parts = plain.split("_", 2)
    if len(parts) != 3 or parts[0] != "rg":
        return None
    return parts[1]


def _caller(row: Any, plain: str) -> Caller | None:
    # row is (id, role, tenant_id, key_hash) of the live key with the prefix.
    if row is None:
        return None
    key_id, role, tenant_id, key_hash = row
    if not hmac.compare_digest(key_hash, hash_key(plain)):
        return None
    return Caller(key_id=key_id, role=role, tenant_id=tenant_id)


def _resolve_on_request_connection(plain: str) -> Caller | None:
    prefix = key_prefix(plain)
    if prefix is None:
        return None
    return _caller(fastpath.find_key(request_connection(), prefix), plain)


def authenticate() -> Caller:
    """Read the Bearer key of the current request, or raise 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Missing API key; send the header 'Authorization: Bearer <key>'."
        )
    # Every request reads the key row, so a revoked key fails at once. No
    # transaction stays open afterwards, so none is open during a provider call.
    if fastpath.enabled(current_app.extensions["rentgate"].engine):
        caller = _resolve_on_request_connection(token.strip())
    else:
        with single_statement_session() as session:
            caller = resolve_key(session, token.strip())
    if caller is None:
        raise Unauthorized(
            "Invalid or revoked API key; check the key or ask the operator for one."
        )
    g.caller = caller
    return caller


def tenant_required(view: F) -> F:
    """Require a tenant key; the view reads ``g.caller.tenant_id``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = authenticate()
        if caller.role != "tenant" or caller.tenant_id is None:
            raise Forbidden("This route needs a tenant API key, not an admin key.")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_required(view: F) -> F:
    """Require an admin key."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = authenticate()
        if caller.role != "admin":
            raise Forbidden("This route needs an admin API key.")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
