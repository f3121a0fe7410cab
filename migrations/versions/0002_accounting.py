"""accounting: price tiers, costs and report indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rentgate.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "price_tiers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("price_id", sa.Integer(), nullable=False),
        sa.Column("up_to", sa.Integer(), nullable=True),
        sa.Column(
            "unit_price",
            rentgate.models.ExactDecimal(precision=24, scale=8),
            nullable=False,
        ),
        sa.CheckConstraint(
            "up_to IS NULL OR up_to > 0", name=op.f("ck_price_tiers_up_to_positive")
        ),
        sa.CheckConstraint(
            "unit_price >= 0", name=op.f("ck_price_tiers_unit_price_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["price_id"], ["prices.id"], name=op.f("fk_price_tiers_price_id_prices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_tiers")),
        sa.UniqueConstraint("price_id", "up_to", name=op.f("uq_price_tiers_price_id")),
    )
    op.create_index(
        op.f("ix_price_tiers_price_id"), "price_tiers", ["price_id"], unique=False
    )

    op.create_table(
        "costs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("start_month", sa.String(length=7), nullable=False),
        sa.Column("end_month", sa.String(length=7), nullable=True),
        sa.Column("amortisation_months", sa.Integer(), nullable=True),
        sa.Column("period_months", sa.Integer(), nullable=True),
        sa.Column("lease_id", sa.String(length=36), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at", rentgate.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.CheckConstraint(
            "kind IN ('capex', 'opex', 'labour', 'provider')",
            name=op.f("ck_costs_kind"),
        ),
        sa.CheckConstraint(
            "amount_minor >= 0", name=op.f("ck_costs_amount_not_negative")
        ),
        sa.CheckConstraint(
            "(kind = 'capex') = (amortisation_months IS NOT NULL)",
            name=op.f("ck_costs_capex_amortisation"),
        ),
        sa.CheckConstraint(
            "amortisation_months IS NULL OR amortisation_months BETWEEN 1 AND 600",
            name=op.f("ck_costs_amortisation_range"),
        ),
        sa.CheckConstraint(
            "(kind IN ('opex', 'labour')) = (period_months IS NOT NULL)",
            name=op.f("ck_costs_recurring_period"),
        ),
        sa.CheckConstraint(
            "period_months IS NULL OR period_months IN (1, 12)",
            name=op.f("ck_costs_period_months"),
        ),
        sa.CheckConstraint(
            "(kind = 'provider') = (lease_id IS NOT NULL)",
            name=op.f("ck_costs_provider_lease"),
        ),
        sa.ForeignKeyConstraint(
            ["lease_id"], ["leases.id"], name=op.f("fk_costs_lease_id_leases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_costs")),
    )
    op.create_index(
        "ix_costs_kind_start_month", "costs", ["kind", "start_month"], unique=False
    )
    op.create_index("ix_costs_lease_id", "costs", ["lease_id"], unique=False)

    op.create_table(
        "revenue_closed_months",
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column(
            "closed_at", rentgate.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint(
            "currency", "month", name=op.f("pk_revenue_closed_months")
        ),
    )
    op.create_table(
        "revenue_months",
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("offering", sa.String(length=40), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "currency", "month", "offering", name=op.f("pk_revenue_months")
        ),
    )

    op.create_index(
        "ix_ledger_entries_currency_booked",
        "ledger_entries",
        ["currency", "booked_at", "offering", "amount_minor"],
        unique=False,
    )
    op.create_index(
        "ix_ledger_entries_lease_id", "ledger_entries", ["lease_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_lease_id", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_currency_booked", table_name="ledger_entries")
    op.drop_table("revenue_months")
    op.drop_table("revenue_closed_months")
    op.drop_index("ix_costs_lease_id", table_name="costs")
    op.drop_index("ix_costs_kind_start_month", table_name="costs")
    op.drop_table("costs")
    op.drop_index(op.f("ix_price_tiers_price_id"), table_name="price_tiers")
    op.drop_table("price_tiers")
