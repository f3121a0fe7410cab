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

INVALID_KEY = "Invalid or revoked API key; check the key or ask the operator for one."


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


def bearer_token() -> str:
    """Return the Bearer key of the current request, or raise 401 if it has none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if not header.strip():
        raise Unauthorized(
            "Missing API key; send the header 'Authorization: Bearer <key>'."
        )
    raise Unauthorized(
        "The Authorization header contains no Bearer API key; send "
        "'Authorization: Bearer <key>', with one space after Bearer."
    )


class VerifiedKeys:
    """SHA-256 hashes of the keys this process authenticated, for two uses.

    An order whose key is in the set has the key checked by its admission
    statement only, so a valid key costs no separate lookup. Any other key is
    checked before the body is read, so a client with a made-up key cannot
    hold a worker by sending its body slowly. The rate limiter counts a key in
    the set by its hash and any other by the client address, so made-up keys
    share one bucket. A key that fails a check leaves the set; the set is
    emptied when it reaches MAX_SIZE.
    """

    MAX_SIZE = 10_000

    def __init__(self) -> None:
        self._hashes: set[str] = set()

    def __contains__(self, key_hash: str) -> bool:
        return key_hash in self._hashes

    def add(self, key_hash: str) -> None:
        if len(self._hashes) >= self.MAX_SIZE:
            self._hashes.clear()
        self._hashes.add(key_hash)

    def discard(self, key_hash: str) -> None:
        self._hashes.discard(key_hash)


verified_keys = VerifiedKeys()


def authenticate() -> Caller:
    """Read the Bearer key of the current request, or raise 401."""
    token = bearer_token()
    # Every request reads the key row, so a revoked key fails at once. No
    # transaction stays open afterwards, so none is open during a provider call.
    if fastpath.enabled(current_app.extensions["rentgate"].engine):
        caller = _resolve_on_request_connection(token)
    else:
        with single_statement_session() as session:
            caller = resolve_key(session, token)
    if caller is None:
        verified_keys.discard(hash_key(token))
        raise Unauthorized(INVALID_KEY)
    verified_keys.add(hash_key(token))
    g.caller = caller
    return caller


def authenticate_tenant() -> Caller:
    """Authenticate the request, or raise 401, and raise 403 for an admin key."""
    caller = authenticate()
    if caller.role != "tenant" or caller.tenant_id is None:
        raise Forbidden("This route needs a tenant API key, not an admin key.")
    return caller


def tenant_required(view: F) -> F:
    """Require a tenant key; the view reads ``g.caller.tenant_id``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        authenticate_tenant()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class PendingKey:
    """A tenant's Bearer key that the order's admission statement checks.

    ``key_hash`` is compared in SQL, which is not constant-time. That leaks at
    most how much of the stored hash matches the hash of a key the client
    chose, and finding a key with a given SHA-256 remains infeasible.
    """

    prefix: str
    key_hash: str

    def tenant_id(self) -> int:
        """Check the key in the database now, raising 401 or 403; return its tenant."""
        caller = g.get("caller") or authenticate_tenant()
        return int(caller.tenant_id)

    def confirm(self, key_id: int, tenant_id: int) -> None:
        """Record the caller that the admission statement found for this key."""
        g.caller = Caller(key_id=key_id, role="tenant", tenant_id=tenant_id)


def pending_key() -> PendingKey:
    """Return the request's key for a check at admission, or raise 401 or 403.

    A key that this process has not authenticated before, or that is not
    shaped like a rentgate key, is checked in full here.
    """
    token = bearer_token()
    prefix = key_prefix(token)
    if prefix is None:
        raise Unauthorized(INVALID_KEY)
    key_hash = hash_key(token)
    if key_hash not in verified_keys:
        authenticate_tenant()
    return PendingKey(prefix=prefix, key_hash=key_hash)


def admin_required(view: F) -> F:
    """Require an admin key."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = authenticate()
        if caller.role != "admin":
            raise Forbidden("This route needs an admin API key.")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
