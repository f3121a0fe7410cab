"""Periodic maintenance that must stay off the request path."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from rentgate.models import IdempotencyKey, utcnow
from rentgate.runtime import Runtime


def prune_idempotency_keys(runtime: Runtime) -> int:
    """Delete finished idempotency keys older than the configured time to live."""
    cutoff = utcnow() - timedelta(hours=runtime.settings.idempotency_ttl_hours)
    with runtime.transaction() as session:
        result = session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.created_at < cutoff,
                IdempotencyKey.completed_at.is_not(None),
            )
        )
    return int(result.rowcount or 0)
