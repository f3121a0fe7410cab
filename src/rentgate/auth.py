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

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from rentgate.db import single_statement_session
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
    parts = plain.split("_", 2)
    if len(parts) != 3 or parts[0] != "rg":
        return None
    # Selecting columns rather than the ApiKey entity skips the ORM's identity
    # map and attribute set-up, which cost more than the query on a fast link.
    row = session.execute(
        select(ApiKey.id, ApiKey.role, ApiKey.tenant_id, ApiKey.key_hash).where(
            ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None)
        )
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(plain)):
        return None
    return Caller(key_id=row.id, role=row.role, tenant_id=row.tenant_id)


def authenticate() -> Caller:
    """Read the Bearer key of the current request, or raise 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Missing API key; send the header 'Authorization: Bearer <key>'."
        )
    # Every request reads the key row, so a revoked key fails at once. The
    # session closes here, so no transaction stays open during a provider call.
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
