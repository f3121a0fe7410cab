"""The order flow: idempotency, quote, admit, call the provider, settle.

Admission and settlement are each one database transaction; the provider call
runs between them, outside any transaction, under a deadline. A crash between
the two leaves the lease ``pending`` for ``rentgate reconcile``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import pybreaker
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from rentgate import admission, fastpath, metrics
from rentgate.db import request_connection
from rentgate.errors import (
    Busy,
    Conflict,
    NotFound,
    RentgateError,
    Unprocessable,
    problem_body,
)
from rentgate.leases import lease_to_dict
from rentgate.models import IdempotencyKey, Lease, LedgerEntry, new_id, utcnow
from rentgate.pricing import Quote, quote, quote_price
from rentgate.providers.base import (
    ACTIONS,
    Deadline,
    ProviderError,
    ProviderRequest,
    ProviderResult,
    ProviderUnavailable,
)
from rentgate.runtime import Runtime
from rentgate.schemas import (
    OFFERING_OF,
    ComputeOrder,
    CustomOptimizationOrder,
    CustomTrainingOrder,
    DataOrder,
    Order,
)

log = logging.getLogger(__name__)

# Statements built once: the order path runs them on every request, and
# building a statement costs more CPU than compiling it from the cache.
INSERT_LEASE = insert(Lease.__table__)
INSERT_LEDGER_ENTRY = insert(LedgerEntry.__table__)

DEFAULT_COMPUTE_HOURS = 1
DEFAULT_DATA_HOURS = 24


class TenantKey(Protocol):
    """An API key that the admission statement checks; see rentgate.auth."""

    prefix: str
    key_hash: str

    def tenant_id(self) -> int:
        """Check the key now, raising 401 or 403, and return its tenant."""

    def confirm(self, key_id: int, tenant_id: int) -> None:
        """Record that the admission statement found the key of ``tenant_id``."""


@dataclass(frozen=True)
class Terms:
    """Quantity, lease term and pool that an order requests."""

    quantity: int
    term_hours: int | None
    billable_hours: int
    pool: str | None


@dataclass
class Draft:
    """An order about to be admitted: its new lease id and what it requests.

    ``claim`` is (route, Idempotency-Key, request hash), or None without a key.
    """

    lease_id: str
    now: datetime
    offering: str
    terms: Terms
    provider_name: str
    details: dict[str, Any]
    claim: tuple[str, str | None, str] | None


@dataclass
class Outcome:
    """The HTTP status and body to send, and whether it is a replay."""

    status: int
    body: dict[str, Any]
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def order_terms(order: Order) -> Terms:
    """Derive quantity, term and pool from a validated order."""
    if isinstance(order, ComputeOrder):
        hours = order.hours or DEFAULT_COMPUTE_HOURS
        return Terms(order.quantity, hours, hours, order.gpu_model)
    if isinstance(order, DataOrder):
        hours = order.hours or DEFAULT_DATA_HOURS
        return Terms(order.quantity, hours, hours, order.dataset)
    if isinstance(order, CustomOptimizationOrder | CustomTrainingOrder):
        return Terms(1, order.duration, order.duration or 1, None)
    return Terms(order.quantity, order.duration, order.duration, None)


def request_hash(payload: dict[str, Any]) -> str:
    """Return a stable hash of a JSON body, independent of key order."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@metrics.track_order
def place_order(
    runtime: Runtime,
    *,
    tenant_id: int | None = None,
    key: TenantKey | None = None,
    route: str,
    payload: dict[str, Any],
    order: Order,
    idempotency_key: str | None = None,
) -> Outcome:
    """Run the whole order flow and return the response to send.

    The tenant is ``tenant_id``, already authenticated, or the owner of
    ``key``, which the admission checks.
    """
    body_hash = request_hash(payload)
    offering = OFFERING_OF[type(order)]
    terms = order_terms(order)
    draft = Draft(
        lease_id=new_id(),
        now=utcnow(),
        offering=offering,
        terms=terms,
        provider_name=runtime.settings.provider_for(offering),
        details=order.model_dump(mode="json", exclude_none=True),
        claim=(route, idempotency_key, body_hash) if idempotency_key else None,
    )

    lease = None
    if key is not None and fastpath.enabled(runtime.engine):
        lease = _admit_in_one_statement(runtime, draft, key)
    if lease is None:
        if tenant_id is None:
            assert key is not None, "place_order needs tenant_id or key"
            tenant_id = key.tenant_id()
        replay = _replay(runtime, tenant_id, draft.claim)
        if replay is not None:
            return replay
        try:
            lease = _admit_in_transaction(runtime, draft, tenant_id)
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key won the claim.
            replay = _replay(runtime, tenant_id, draft.claim)
            if replay is None:
                raise
            return replay
    log.info(
        "lease admitted lease_id=%s tenant_id=%s offering=%s amount_minor=%s",
        lease.id,
        lease.tenant_id,
        offering,
        lease.amount_minor,
    )

    kind, action = ACTIONS[offering]
    provider_request = ProviderRequest(
        lease_id=lease.id,
        tenant_id=lease.tenant_id,
        offering=offering,
        kind=kind,
        action=action,
        quantity=terms.quantity,
        hours=terms.term_hours,
        pool=lease.details.get("pool"),
        order=order.model_dump(mode="json", exclude_none=True),
    )
    try:
        result = call_provider(runtime, draft.provider_name, provider_request)
    except ProviderError as exc:
        return _provider_failed(runtime, lease, exc)
    try:
        return settle_success(
            runtime, lease, result, has_claim=idempotency_key is not None
        )
    except OperationalError as exc:
        # The provider has acted, so the client must learn which lease to
        # wait for rather than place the order again.
        log.warning(
            "settle failed, lease stays pending lease_id=%s: %s", lease.id, exc.orig
        )
        raise Busy(
            f"The provider fulfilled the order but the database was busy or "
            "unreachable, so "
            f"lease '{lease.id}' stays pending until the reconcile job settles "
            "it; read the lease or retry with the same Idempotency-Key.",
            retry_after=1,
            extra={"lease_id": lease.id},
        ) from exc


@metrics.track_provider_call
def call_provider(
    runtime: Runtime, provider_name: str, request: ProviderRequest
) -> ProviderResult:
    """Submit to the provider through its circuit breaker, under the deadline."""
    provider = runtime.providers.get(provider_name)
    breaker = runtime.providers.breakers[provider_name]
    deadline = Deadline(runtime.settings.provider_deadline)
    try:
        return breaker.call(provider.submit, request, deadline)
    except pybreaker.CircuitBreakerError:
        wait = max(1, math.ceil(runtime.settings.circuit_reset_seconds))
        raise ProviderUnavailable(
            f"Provider {provider_name!r} is failing, so its circuit is open; "
            f"retry after {wait} seconds.",
            retry_after=wait,
        ) from None
    except ProviderError:
        raise
    except Exception as exc:
        log.exception(
            "provider %s raised an unexpected error for lease %s",
            provider_name,
            request.lease_id,
        )
        raise ProviderError(
            f"Provider {provider_name!r} failed with an unexpected error."
        ) from exc


def _admit_in_one_statement(
    runtime: Runtime, draft: Draft, key: TenantKey
) -> Lease | None:
    """Check the key, claim the Idempotency-Key and admit, with one PostgreSQL
    statement; None if it changed nothing.

    The caller then checks the key and admits in a transaction. That finds
    out why and raises the 401, 402, 403, 409 or 422 for it. Or it replays
    the response stored for the Idempotency-Key, or admits the order at a
    newer price.
    """
    offering, terms = draft.offering, draft.terms
    try:
        priced = quote_price(
            runtime.prices.get(request_connection(), offering),
            offering,
            terms.quantity,
            terms.billable_hours,
        )
    except RentgateError:
        # The cached price may be stale, so the transaction path quotes again
        # and raises the error if it still holds, after checking the key.
        runtime.prices.forget(offering)
        return None
    route, claim_key, body_hash = draft.claim or (None, None, None)
    values = {
        "key_prefix": key.prefix,
        "key_hash": key.key_hash,
        "lease_id": draft.lease_id,
        "offering": offering,
        "provider": draft.provider_name,
        "quantity": terms.quantity,
        "hours": terms.term_hours,
        "unit": priced.unit,
        "unit_price": priced.unit_price,
        "currency": priced.currency,
        "amount_minor": priced.amount_minor,
        "details": json.dumps(draft.details),
        "price_id": priced.price_id,
        "pool_name": terms.pool,
        "period": admission.current_period(),
        "now": draft.now,
        "claim_route": route,
        "claim_key": claim_key,
        "request_hash": body_hash,
    }
    try:
        row = fastpath.admit(request_connection(), values)
    except IntegrityError:
        return None
    if row is None:
        runtime.prices.forget(offering)
        return None
    key_id, tenant_id, pool_id, pool_name, credit_period = row
    key.confirm(key_id, tenant_id)
    return _pending_lease(draft, tenant_id, priced, pool_id, pool_name, credit_period)


def _admit_in_transaction(runtime: Runtime, draft: Draft, tenant_id: int) -> Lease:
    terms = draft.terms
    with runtime.transaction() as session:
        if draft.claim is not None:
            # The claim is inserted first, so a concurrent request with the same
            # key fails on the unique constraint before it reserves anything,
            # and the claim commits with the pending lease, before the provider
            # call. A rejected admission rolls the claim back with the lease.
            route, key, body_hash = draft.claim
            session.execute(
                insert(IdempotencyKey.__table__).values(
                    tenant_id=tenant_id,
                    route=route,
                    key=key,
                    request_hash=body_hash,
                    lease_id=draft.lease_id,
                    created_at=draft.now,
                )
            )
        priced = quote(session, draft.offering, terms.quantity, terms.billable_hours)
        pool = admission.reserve_capacity(
            session, draft.offering, terms.pool, terms.quantity
        )
        period = admission.reserve_credit(session, tenant_id, priced)
        lease = _pending_lease(
            draft,
            tenant_id,
            priced,
            pool.id if pool else None,
            pool.name if pool else None,
            period,
        )
        # The row goes in with a Core INSERT because the ORM unit of work costs
        # more than the statement.
        session.execute(INSERT_LEASE, _columns(lease))
    return lease


def _pending_lease(
    draft: Draft,
    tenant_id: int,
    priced: Quote,
    pool_id: int | None,
    pool_name: str | None,
    period: str | None,
) -> Lease:
    # The object is in no session: the row goes in with a Core statement.
    return Lease(
        id=draft.lease_id,
        tenant_id=tenant_id,
        offering=draft.offering,
        provider=draft.provider_name,
        pool_id=pool_id,
        quantity=draft.terms.quantity,
        hours=draft.terms.term_hours,
        unit=priced.unit,
        unit_price=priced.unit_price,
        currency=priced.currency,
        amount_minor=priced.amount_minor,
        credit_period=period,
        state="pending",
        resource_id=None,
        details={**draft.details, "pool": pool_name},
        failure_reason=None,
        created_at=draft.now,
        updated_at=draft.now,
        activated_at=None,
        failed_at=None,
        ended_at=None,
        expires_at=None,
    )


def settle_success(
    runtime: Runtime, lease: Lease, result: ProviderResult, *, has_claim: bool = True
) -> Outcome:
    """Activate a pending lease and book its one charge, in one transaction.

    ``lease`` is the detached row from admission. The UPDATE only matches a
    lease still pending, so a lease the reconcile job settled meanwhile is
    left as it is and its own state is returned.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "state": "active",
        "resource_id": result.resource_id,
        "activated_at": now,
        "updated_at": now,
        "expires_at": now + timedelta(hours=lease.hours) if lease.hours else None,
    }
    if result.details:
        values["details"] = {**lease.details, "provider": result.details}
    if fastpath.enabled(runtime.engine):
        # The response is built before the statement, which stores it for the
        # Idempotency-Key together with the activation.
        outcome = _activated(lease, values)
        activated = fastpath.activate(
            request_connection(),
            lease_id=lease.id,
            resource_id=result.resource_id,
            now=now,
            expires_at=values["expires_at"],
            details=values.get("details"),
            response=(outcome.status, outcome.body) if has_claim else None,
        )
        if activated:
            _count_activation(lease)
            return outcome
        # Not pending any more: the general path below reads its state.
    leases = Lease.__table__
    with runtime.transaction() as session:
        changed = session.execute(
            update(leases)
            .where(leases.c.id == lease.id, leases.c.state == "pending")
            .values(**values)
        ).rowcount
        if changed:
            session.execute(
                INSERT_LEDGER_ENTRY,
                {
                    "lease_id": lease.id,
                    "tenant_id": lease.tenant_id,
                    "offering": lease.offering,
                    "kind": "charge",
                    "amount_minor": lease.amount_minor,
                    "currency": lease.currency,
                    "booked_at": now,
                    "note": "order",
                },
            )
            outcome = _activated(lease, values)
            _count_activation(lease)
        else:
            current = session.get(Lease, lease.id)
            if current is None:
                raise NotFound(f"Lease '{lease.id}' vanished before it was settled.")
            outcome = outcome_for_lease(current)
        if has_claim:
            complete_claim(session, lease.id, outcome)
    return outcome


def _activated(lease: Lease, values: dict[str, Any]) -> Outcome:
    """Copy the activation's ``values`` onto ``lease``; return its response."""
    for name, value in values.items():
        setattr(lease, name, value)
    return outcome_for_lease(lease)


def _count_activation(lease: Lease) -> None:
    metrics.count_revenue(lease)
    log.info("lease activated lease_id=%s resource_id=%s", lease.id, lease.resource_id)


def _columns(lease: Lease) -> dict[str, Any]:
    return {
        column.key: getattr(lease, column.key) for column in Lease.__table__.columns
    }


@metrics.track_activation
def activate(session: Session, lease: Lease, result: ProviderResult) -> bool:
    """Make a pending lease active and add its charge; False if not pending."""
    if lease.state != "pending":
        return False
    now = utcnow()
    lease.state = "active"
    lease.resource_id = result.resource_id
    lease.activated_at = now
    lease.updated_at = now
    if lease.hours:
        lease.expires_at = now + timedelta(hours=lease.hours)
    if result.details:
        lease.details = {**lease.details, "provider": result.details}
    session.add(
        LedgerEntry(
            lease_id=lease.id,
            tenant_id=lease.tenant_id,
            offering=lease.offering,
            kind="charge",
            amount_minor=lease.amount_minor,
            currency=lease.currency,
            booked_at=now,
            note="order",
        )
    )
    log.info("lease activated lease_id=%s resource_id=%s", lease.id, lease.resource_id)
    return True


def settle_failure(session: Session, lease: Lease, reason: str) -> bool:
    """Fail a pending lease and release what it reserved; False if not pending."""
    now = utcnow()
    changed = session.execute(
        update(Lease)
        .where(Lease.id == lease.id, Lease.state == "pending")
        .values(state="failed", failed_at=now, updated_at=now, failure_reason=reason)
    ).rowcount
    if not changed:
        return False
    admission.release_reservation(session, lease)
    log.info("lease failed lease_id=%s reason=%s", lease.id, reason)
    return True


def _provider_failed(runtime: Runtime, lease: Lease, exc: ProviderError) -> Outcome:
    extra = {"lease_id": lease.id}
    if not exc.outcome_known:
        log.warning(
            "provider outcome unknown lease_id=%s provider=%s: %s",
            lease.id,
            lease.provider,
            exc.detail,
        )
        exc.detail += " The lease stays pending until the reconcile job settles it."
        exc.extra = {**exc.extra, **extra}
        raise exc
    with runtime.transaction() as session:
        row = session.get(Lease, lease.id, with_for_update=True)
        assert row is not None
        settle_failure(session, row, exc.detail)
        exc.extra = {**exc.extra, **extra}
        outcome = Outcome(exc.status, problem_body(exc))
        if exc.retry_after is not None:
            outcome.headers["Retry-After"] = str(exc.retry_after)
        complete_claim(session, lease.id, outcome)
    log.warning(
        "provider failed lease_id=%s provider=%s: %s",
        lease.id,
        lease.provider,
        exc.detail,
    )
    return outcome


def outcome_for_lease(lease: Lease) -> Outcome:
    """Return the response an order gets once its lease is settled."""
    if lease.state == "failed":
        error = ProviderError(
            lease.failure_reason or "The provider failed.", extra={"lease_id": lease.id}
        )
        return Outcome(error.status, problem_body(error))
    return Outcome(
        201,
        {
            "status": "success",
            "resource_id": lease.resource_id,
            "lease": lease_to_dict(lease),
        },
        headers={"Location": f"/leases/{lease.id}"},
    )


def complete_claim(session: Session, lease_id: str, outcome: Outcome) -> None:
    """Store the response on the idempotency claim of a lease, if it has one."""
    keys = IdempotencyKey.__table__
    session.execute(
        update(keys)
        .where(keys.c.lease_id == lease_id, keys.c.response_status.is_(None))
        .values(
            response_status=outcome.status,
            response_body=outcome.body,
            completed_at=utcnow(),
        )
    )


def lease_action_once(
    runtime: Runtime,
    *,
    tenant_id: int,
    route: str,
    lease_id: str,
    payload: dict[str, Any],
    idempotency_key: str | None,
    action: Callable[[IdempotencyKey | None], Lease],
) -> Outcome:
    """Run a lease release or extension at most once per Idempotency-Key.

    ``action`` stores the claim it is given in its own transaction, together
    with the response, so a stored claim always has a response and a rejected
    action stores nothing. A repeated key replays that response.
    """
    if idempotency_key is None:
        return Outcome(200, lease_to_dict(action(None)))

    body_hash = request_hash(payload)
    earlier = _find_claim(runtime, tenant_id, route, idempotency_key)
    if earlier is not None:
        return _answer_from_claim(runtime, earlier, body_hash)
    claim = IdempotencyKey(
        tenant_id=tenant_id,
        route=route,
        key=idempotency_key,
        request_hash=body_hash,
        lease_id=lease_id,
    )
    try:
        lease = action(claim)
    except IntegrityError:
        earlier = _find_claim(runtime, tenant_id, route, idempotency_key)
        if earlier is None:
            raise
        return _answer_from_claim(runtime, earlier, body_hash)
    return Outcome(200, lease_to_dict(lease))


def _replay(
    runtime: Runtime, tenant_id: int, claim: tuple[str, str | None, str] | None
) -> Outcome | None:
    """Return the response for an Idempotency-Key used before, or None."""
    if claim is None:
        return None
    route, key, body_hash = claim
    assert key is not None
    earlier = _find_claim(runtime, tenant_id, route, key)
    if earlier is None:
        return None
    return _answer_from_claim(runtime, earlier, body_hash)


def _find_claim(
    runtime: Runtime, tenant_id: int, route: str, key: str
) -> IdempotencyKey | None:
    with runtime.read_sessions() as session:
        return session.scalars(
            select(IdempotencyKey).where(
                IdempotencyKey.tenant_id == tenant_id,
                IdempotencyKey.route == route,
                IdempotencyKey.key == key,
            )
        ).first()


def _answer_from_claim(
    runtime: Runtime, claim: IdempotencyKey, body_hash: str
) -> Outcome:
    if claim.request_hash != body_hash:
        raise Unprocessable(
            "Idempotency-Key was already used with a different body; "
            "use a new key for a new order.",
            extra={"idempotency_key": claim.key},
        )
    if claim.response_status is not None and claim.response_body is not None:
        replay = Outcome(claim.response_status, claim.response_body, replayed=True)
        if claim.response_status == 201 and claim.lease_id:
            replay.headers["Location"] = f"/leases/{claim.lease_id}"
        return replay

    with runtime.read_sessions() as session:
        lease = session.get(Lease, claim.lease_id) if claim.lease_id else None
    if lease is not None and lease.state != "pending":
        outcome = outcome_for_lease(lease)
        outcome.replayed = True
        return outcome
    raise Conflict(
        "A request with this Idempotency-Key is still being processed; "
        "retry after the given number of seconds.",
        retry_after=1,
        extra={"lease_id": claim.lease_id},
    )
