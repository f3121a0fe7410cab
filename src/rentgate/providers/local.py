"""The embedded provider: fulfils orders from the gateway's own database.

Capacity is reserved when the gateway admits an order, by a conditional UPDATE
of the pool. This provider records the allocation under the lease id, so a
second submit of the same lease returns the same resource.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from rentgate.db import dialect_insert
from rentgate.models import LocalAllocation, utcnow
from rentgate.providers.base import (
    Deadline,
    Provider,
    ProviderRequest,
    ProviderResult,
    ProviderStatus,
    ProviderUnavailable,
)


class LocalProvider(Provider):
    """Allocates from capacity pools in the gateway database."""

    honours_reference = True
    engine: Engine | None = None
    # The engine an allocation runs on, and its INSERT, built once in bind().
    _write_engine: Engine | None = None
    _insert: Any = None

    def bind(self, engine: Engine) -> None:
        """Give the provider the gateway's engine."""
        self.engine = engine
        # One INSERT is atomic on its own, so PostgreSQL runs it in autocommit
        # mode, without the round trips of BEGIN and COMMIT. SQLite keeps the
        # transaction, whose BEGIN IMMEDIATE takes the write lock up front.
        self._write_engine = engine
        if engine.dialect.name == "postgresql":
            self._write_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._insert = (
            dialect_insert(engine)(LocalAllocation.__table__)
            .values(
                lease_id=bindparam("lease_id"),
                resource_id=bindparam("resource_id"),
                offering=bindparam("offering"),
                quantity=bindparam("quantity"),
                state="active",
                created_at=bindparam("created_at"),
            )
            .on_conflict_do_nothing(index_elements=["lease_id"])
        )

    def _session(self) -> Session:
        if self.engine is None:
            raise ProviderUnavailable("Local provider has no database; call bind().")
        return Session(self.engine)

    def submit(self, request: ProviderRequest, deadline: Deadline) -> ProviderResult:
        try:
            return self._allocate(request)
        except OperationalError as exc:
            # On SQLite a busy write lock after the busy timeout means nothing
            # was written, so the order can fail cleanly with a 503.
            raise ProviderUnavailable(
                f"Local provider could not record the allocation of lease "
                f"{request.lease_id}: the database is busy or unreachable; "
                "retry shortly.",
                retry_after=1,
            ) from exc

    def _allocate(self, request: ProviderRequest) -> ProviderResult:
        if self._write_engine is None:
            raise ProviderUnavailable("Local provider has no database; call bind().")
        pool = request.pool or "any"
        resource_id = f"{request.kind}-{pool}-{request.lease_id}"
        allocations = LocalAllocation.__table__
        with self._write_engine.begin() as connection:
            inserted = connection.execute(
                self._insert,
                {
                    "lease_id": request.lease_id,
                    "resource_id": resource_id,
                    "offering": request.offering,
                    "quantity": request.quantity,
                    "created_at": utcnow(),
                },
            ).rowcount
            if not inserted:
                # A second submit of the same lease returns the first resource.
                resource_id = connection.execute(
                    select(allocations.c.resource_id).where(
                        allocations.c.lease_id == request.lease_id
                    )
                ).scalar_one()
        return ProviderResult(resource_id)

    def status(self, lease_id: str, deadline: Deadline) -> ProviderStatus:
        with self._session() as session:
            row = session.scalars(
                select(LocalAllocation).where(LocalAllocation.lease_id == lease_id)
            ).first()
        if row is None:
            return ProviderStatus("unknown", reason="no allocation for this lease")
        if row.state != "active":
            return ProviderStatus("failed", row.resource_id, reason="released")
        return ProviderStatus("active", row.resource_id)

    def release(self, lease_id: str, resource_id: str, deadline: Deadline) -> None:
        with self._session() as session, session.begin():
            session.execute(
                update(LocalAllocation)
                .where(LocalAllocation.lease_id == lease_id)
                .values(state="released")
            )
