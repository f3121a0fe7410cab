"""Settles leases left ``pending`` by a crash or an unknown provider outcome.

For each pending lease older than a threshold, the job reads the lease's
status from its provider. An active resource activates the lease and books its
charge. A failure fails the lease and releases its reservation. A provider that
never received the order gets it again, with the lease id as idempotency
reference, so the customer ends with exactly one resource. On PostgreSQL each
lease is locked with ``FOR UPDATE SKIP LOCKED``, so several instances can run
the job at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from rentgate.models import Lease, utcnow
from rentgate.ordering import (
    activate,
    complete_claim,
    outcome_for_lease,
    settle_failure,
)
from rentgate.providers.base import (
    ACTIONS,
    Deadline,
    ProviderError,
    ProviderRequest,
    ProviderResult,
)
from rentgate.runtime import Runtime

log = logging.getLogger(__name__)

# A lease still pending after this long is failed even if its provider keeps
# giving unknown outcomes, so no lease stays pending forever.
GIVE_UP_AFTER = timedelta(hours=24)


@dataclass
class ReconcileReport:
    """Lease ids per outcome of one run."""

    activated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    still_pending: list[str] = field(default_factory=list)


def reconcile(
    runtime: Runtime, *, older_than: timedelta | None = None, limit: int = 1000
) -> ReconcileReport:
    """Settle pending leases older than ``older_than``; return what changed."""
    age = older_than
    if age is None:
        age = timedelta(seconds=runtime.settings.reconcile_after_seconds)
    cutoff = utcnow() - age
    report = ReconcileReport()
    seen: set[str] = set()
    for _ in range(limit):
        if runtime.engine.dialect.name == "postgresql":
            lease_id = _settle_next_locked(runtime, cutoff, seen, report)
        else:
            lease_id = _settle_next(runtime, cutoff, seen, report)
        if lease_id is None:
            break
        seen.add(lease_id)
    return report


def _candidates(cutoff, seen: set[str]):  # type: ignore[no-untyped-def]
    query = select(Lease).where(Lease.state == "pending", Lease.created_at <= cutoff)
    if seen:
        query = query.where(Lease.id.not_in(seen))
    return query.order_by(Lease.created_at).limit(1)


def _settle_next_locked(
    runtime: Runtime,
    cutoff,
    seen: set[str],
    report: ReconcileReport,  # type: ignore[no-untyped-def]
) -> str | None:
    with runtime.transaction() as session:
        lease = session.scalars(
            _candidates(cutoff, seen).with_for_update(skip_locked=True)
        ).first()
        if lease is None:
            return None
        _settle(runtime, session, lease, report)
        return lease.id


def _settle_next(
    runtime: Runtime,
    cutoff,
    seen: set[str],
    report: ReconcileReport,  # type: ignore[no-untyped-def]
) -> str | None:
    # SQLite locks the whole file for a write transaction, so the provider is
    # asked outside it; the settle steps only change a lease still pending.
    with runtime.read_sessions() as session:
        lease = session.scalars(_candidates(cutoff, seen)).first()
    if lease is None:
        return None
    decision = _ask_provider(runtime, lease)
    with runtime.transaction() as session:
        current = session.get(Lease, lease.id)
        if current is not None and current.state == "pending":
            _apply(session, current, decision, report)
    return lease.id


def _settle(
    runtime: Runtime, session: Session, lease: Lease, report: ReconcileReport
) -> None:
    decision = _ask_provider(runtime, lease)
    _apply(session, lease, decision, report)


Decision = tuple[str, ProviderResult | None, str]


def _ask_provider(runtime: Runtime, lease: Lease) -> Decision:
    provider = runtime.providers.get(lease.provider)
    deadline = Deadline(runtime.settings.provider_deadline)
    try:
        status = provider.status(lease.id, deadline)
        if status.state == "active" and status.resource_id:
            return ("activate", ProviderResult(status.resource_id), "")
        if status.state == "failed":
            return ("fail", None, status.reason or "provider reports the order failed")
        kind, action = ACTIONS[lease.offering]
        request = ProviderRequest(
            lease_id=lease.id,
            tenant_id=lease.tenant_id,
            offering=lease.offering,
            kind=kind,
            action=action,
            quantity=lease.quantity,
            hours=lease.hours,
            pool=(lease.details or {}).get("pool"),
            order={k: v for k, v in (lease.details or {}).items() if k != "pool"},
        )
        result = provider.submit(request, Deadline(runtime.settings.provider_deadline))
        return ("activate", result, "")
    except ProviderError as exc:
        if exc.outcome_known:
            return ("fail", None, exc.detail)
        return ("wait", None, exc.detail)


def _apply(
    session: Session, lease: Lease, decision: Decision, report: ReconcileReport
) -> None:
    action, result, reason = decision
    if action == "wait" and utcnow() - lease.created_at > GIVE_UP_AFTER:
        action, reason = "fail", f"still unknown after {GIVE_UP_AFTER}: {reason}"
    if action == "activate" and result is not None:
        activate(session, lease, result)
        report.activated.append(lease.id)
    elif action == "fail":
        settle_failure(session, lease, reason)
        report.failed.append(lease.id)
    else:
        log.warning("lease still pending lease_id=%s: %s", lease.id, reason)
        report.still_pending.append(lease.id)
        return
    session.flush()
    session.refresh(lease)
    complete_claim(session, lease.id, outcome_for_lease(lease))
    log.info("reconciled lease_id=%s to %s", lease.id, lease.state)
