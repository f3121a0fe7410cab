"""Lease queries and the lifecycle after activation: release, extend, expire."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rentgate import admission
from rentgate.errors import NotFound, Unprocessable
from rentgate.models import IdempotencyKey, Lease, LedgerEntry, utcnow
from rentgate.money import format_decimal, format_money, to_minor
from rentgate.pricing import charge_amount
from rentgate.providers.base import Deadline, ProviderError
from rentgate.runtime import Runtime

log = logging.getLogger(__name__)

# Key in Lease.details of the extensions in order, each with the month whose
# credit it counted against (None when the tenant had no limit) and its amount
# in minor units. It is bookkeeping, so the API does not show it.
EXTENSION_CREDIT = "extension_credit"


def lease_to_dict(lease: Lease) -> dict[str, Any]:
    """Render a lease for the API, money as decimal strings."""
    details = {
        key: value
        for key, value in (lease.details or {}).items()
        if key != EXTENSION_CREDIT
    }
    return {
        "id": lease.id,
        "offering": lease.offering,
        "provider": lease.provider,
        "state": lease.state,
        "quantity": lease.quantity,
        "hours": lease.hours,
        "unit": lease.unit,
        "unit_price": format_decimal(lease.unit_price),
        "amount": format_money(lease.amount_minor, lease.currency),
        "currency": lease.currency,
        "resource_id": lease.resource_id,
        "pool": details.get("pool"),
        "details": details,
        "failure_reason": lease.failure_reason,
        "created_at": _iso(lease.created_at),
        "activated_at": _iso(lease.activated_at),
        "failed_at": _iso(lease.failed_at),
        "ended_at": _iso(lease.ended_at),
        "expires_at": _iso(lease.expires_at),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def get_lease(
    session: Session, tenant_id: int, lease_id: str, *, lock: bool = False
) -> Lease:
    """Return the tenant's lease or raise 404; another tenant's lease is 404 too."""
    query = select(Lease).where(Lease.id == lease_id, Lease.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update()
    lease = session.scalars(query).first()
    if lease is None:
        raise NotFound(f"Lease '{lease_id}' not found for this tenant.")
    return lease


def list_leases(
    session: Session,
    tenant_id: int,
    *,
    page: int,
    per_page: int,
    state: str | None = None,
    offering: str | None = None,
) -> tuple[list[Lease], int]:
    """Return one page of the tenant's leases, newest first, and the total."""
    conditions = [Lease.tenant_id == tenant_id]
    if state is not None:
        conditions.append(Lease.state == state)
    if offering is not None:
        conditions.append(Lease.offering == offering)
    total = session.scalar(select(func.count()).select_from(Lease).where(*conditions))
    rows = session.scalars(
        select(Lease)
        .where(*conditions)
        .order_by(Lease.created_at.desc(), Lease.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return list(rows), int(total or 0)


def _require_active(lease: Lease, action: str) -> None:
    if lease.state != "active":
        raise Unprocessable(
            f"Lease '{lease.id}' is {lease.state}; only an active lease can be "
            f"{action}.",
            extra={"lease_id": lease.id, "state": lease.state},
        )


def used_hours(lease: Lease) -> int:
    """Return the hours started since activation, capped at the term."""
    assert lease.activated_at is not None and lease.hours is not None
    elapsed = (utcnow() - lease.activated_at).total_seconds() / 3600
    return min(lease.hours, max(1, math.ceil(elapsed)))


def release_lease(
    runtime: Runtime,
    tenant_id: int,
    lease_id: str,
    *,
    claim: IdempotencyKey | None = None,
) -> Lease:
    """End an active lease early and refund unused whole hours of a timed price.

    The lease's end, its refund, the capacity and credit it gives back and a
    ``claim`` commit in one transaction before the provider is asked to free
    the resource. A crash or a provider failure after the commit therefore
    leaves the tenant no longer billed and the resource still held at the
    provider, never the reverse. A retry gets the stored response or a 422
    and does not call the provider again.
    """
    now = utcnow()
    with runtime.transaction() as session:
        _insert_claim(session, claim)
        lease = get_lease(session, tenant_id, lease_id, lock=True)
        _require_active(lease, "released")
        refund = 0
        unused = 0
        if lease.unit == "unit_hour" and lease.hours:
            unused = lease.hours - used_hours(lease)
            refund = _minor(lease, unused)
        lease.state = "released"
        lease.ended_at = now
        lease.updated_at = now
        admission.release_capacity(session, lease)
        if refund > 0:
            session.add(
                LedgerEntry(
                    lease_id=lease.id,
                    tenant_id=lease.tenant_id,
                    offering=lease.offering,
                    kind="refund",
                    amount_minor=-refund,
                    currency=lease.currency,
                    booked_at=now,
                    note=f"early release, {unused} h unused",
                )
            )
            _return_credit(session, lease, refund)
        _complete_claim(claim, lease)
    log.info("lease released lease_id=%s refund_minor=%s", lease.id, refund)

    # NOTE: nothing retries a provider release that failed, or that a crash
    # after the commit cut off. Only the warning it logs records a failure.
    _release_resource(runtime, lease, "release")
    return lease


def _credit_segments(lease: Lease) -> list[tuple[str | None, int]]:
    # The order first, then each extension, as (month counted in or None,
    # amount in minor units).
    # NOTE: a lease extended before extensions were listed in details has only
    # its order here, and its credit_period may be the month of an extension,
    # so its release gives back at most the order's amount, to that month.
    segments = [(lease.credit_period, lease.amount_minor)]
    for item in (lease.details or {}).get(EXTENSION_CREDIT, []):
        segments.append((item["period"], item["amount_minor"]))
    return segments


def _return_credit(session: Session, lease: Lease, refund: int) -> None:
    """Give back the credit that the refunded hours counted, month by month.

    The unused hours are the last ones of the term, so the refund is matched
    against the newest extension first and the order last. Each part gives
    back credit only to the month it was counted in, and at most its amount.
    """
    per_period: dict[str, int] = {}
    remaining = refund
    for period, amount in reversed(_credit_segments(lease)):
        share = min(remaining, amount)
        remaining -= share
        if period is not None and share > 0:
            per_period[period] = per_period.get(period, 0) + share

    for period, amount in sorted(per_period.items()):
        returned = admission.return_credit(session, lease.tenant_id, period, amount)
        if returned < amount:
            log.warning(
                "credit period %s had less used credit than the lease counted in "
                "it, so only the used credit was returned lease_id=%s "
                "tenant_id=%s counted_minor=%s returned_minor=%s",
                period,
                lease.id,
                lease.tenant_id,
                amount,
                returned,
            )


def extend_lease(
    runtime: Runtime,
    tenant_id: int,
    lease_id: str,
    hours: int,
    *,
    claim: IdempotencyKey | None = None,
) -> Lease:
    """Lengthen an active timed lease and book the extension as a new charge.

    A ``claim`` is stored in the same transaction, with the response.
    """
    now = utcnow()
    with runtime.transaction() as session:
        _insert_claim(session, claim)
        lease = get_lease(session, tenant_id, lease_id, lock=True)
        _require_active(lease, "extended")
        if lease.unit != "unit_hour" or lease.hours is None:
            raise Unprocessable(
                f"Lease '{lease.id}' is priced per {lease.unit.replace('_', '-')}, "
                "not per unit-hour, so it cannot be extended; place a new order.",
                extra={"lease_id": lease.id},
            )
        amount = _minor(lease, hours)
        period = admission.reserve_credit_amount(
            session, lease.tenant_id, amount, lease.currency, charged_for="extension"
        )
        lease.hours += hours
        lease.expires_at = (lease.expires_at or now) + timedelta(hours=hours)
        lease.updated_at = now
        # credit_period stays the order's month. A release reads this list to
        # give credit back only to the months that counted each extension.
        details = lease.details or {}
        extensions = [
            *details.get(EXTENSION_CREDIT, []),
            {"period": period, "amount_minor": amount},
        ]
        lease.details = {**details, EXTENSION_CREDIT: extensions}
        session.add(
            LedgerEntry(
                lease_id=lease.id,
                tenant_id=lease.tenant_id,
                offering=lease.offering,
                kind="extension",
                amount_minor=amount,
                currency=lease.currency,
                booked_at=now,
                note=f"extended by {hours} h",
            )
        )
        _complete_claim(claim, lease)
    log.info(
        "lease extended lease_id=%s hours=%s amount_minor=%s", lease.id, hours, amount
    )
    return lease


def _insert_claim(session: Session, claim: IdempotencyKey | None) -> None:
    # Inserted before the lease is locked, so a concurrent request with the same
    # key waits on the unique index and then replays this one's response.
    if claim is not None:
        session.add(claim)
        session.flush()


def _complete_claim(claim: IdempotencyKey | None, lease: Lease) -> None:
    if claim is not None:
        claim.response_status = 200
        claim.response_body = lease_to_dict(lease)
        claim.completed_at = utcnow()


def _minor(lease: Lease, hours: int) -> int:
    amount = charge_amount(
        lease.unit, lease.unit_price, lease.quantity, hours, lease.currency
    )
    return to_minor(amount, lease.currency)


def expire_leases(runtime: Runtime, *, batch: int = 500) -> int:
    """End active leases past their term, free their capacity; return the count."""
    now = utcnow()
    expired: list[Lease] = []
    with runtime.transaction() as session:
        query = (
            select(Lease)
            .where(Lease.state == "active", Lease.expires_at <= now)
            .order_by(Lease.expires_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        for lease in session.scalars(query).all():
            lease.state = "expired"
            lease.ended_at = now
            lease.updated_at = now
            admission.release_capacity(session, lease)
            expired.append(lease)
    for lease in expired:
        _release_resource(runtime, lease, "expiry")
        log.info("lease expired lease_id=%s", lease.id)
    return len(expired)


def _release_resource(runtime: Runtime, lease: Lease, cause: str) -> None:
    """Ask the provider to free the resource of a lease that has ended.

    The lease has already ended in the database, so a provider failure is
    logged as a warning and not raised.
    """
    provider = runtime.providers.get(lease.provider)
    try:
        provider.release(
            lease.id,
            lease.resource_id or "",
            Deadline(runtime.settings.provider_deadline),
        )
    except ProviderError as exc:
        log.warning(
            "provider release failed after %s lease_id=%s provider=%s: %s",
            cause,
            lease.id,
            lease.provider,
            exc.detail,
        )
