"""Index idempotency keys by lease

Settling an order stores its response on the claim found by lease id; without
an index that lookup scans every key kept for the last 24 hours.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 17:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_idempotency_keys_lease_id", "idempotency_keys", ["lease_id"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_lease_id", table_name="idempotency_keys")
