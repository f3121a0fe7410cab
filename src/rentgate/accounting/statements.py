"""A tenant's monthly statement: every ledger entry of the month and its totals."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rentgate.accounting.common import iso, money
from rentgate.accounting.months import add_months, month_start
from rentgate.models import LedgerEntry, Tenant

CSV_COLUMNS = (
    "id",
    "booked_at",
    "lease_id",
    "offering",
    "kind",
    "amount",
    "currency",
    "note",
)


def statement(session: Session, tenant: Tenant, month: str) -> dict[str, Any]:
    """Build the statement of ``tenant`` for ``month`` (YYYY-MM, UTC).

    Totals are kept per currency, since a tenant may have bought in several.
    """
    entries = session.scalars(
        select(LedgerEntry)
        .where(
            LedgerEntry.tenant_id == tenant.id,
            LedgerEntry.booked_at >= month_start(month),
            LedgerEntry.booked_at < month_start(add_months(month, 1)),
        )
        .order_by(LedgerEntry.booked_at, LedgerEntry.id)
    ).all()
    sums: dict[str, dict[str, int]] = defaultdict(
        lambda: {"charge": 0, "extension": 0, "refund": 0}
    )
    items = []
    for entry in entries:
        sums[entry.currency][entry.kind] += entry.amount_minor
        items.append(
            {
                "id": entry.id,
                "booked_at": iso(entry.booked_at),
                "lease_id": entry.lease_id,
                "offering": entry.offering,
                "kind": entry.kind,
                "amount": money(entry.amount_minor, entry.currency),
                "currency": entry.currency,
                "note": entry.note,
            }
        )
    totals = []
    for currency, kinds in sorted(sums.items()):
        totals.append(
            {
                "currency": currency,
                "charges": money(kinds["charge"], currency),
                "extensions": money(kinds["extension"], currency),
                "refunds": money(kinds["refund"], currency),
                "total": money(sum(kinds.values()), currency),
            }
        )
    return {
        "tenant_id": tenant.id,
        "tenant": tenant.name,
        "month": month,
        "entries": items,
        "totals": totals,
    }


def statement_csv(document: dict[str, Any]) -> str:
    """Render a statement as CSV: one row per entry, then one total per currency."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item in document["entries"]:
        writer.writerow([item[column] for column in CSV_COLUMNS])
    for total in document["totals"]:
        writer.writerow(
            ["", "", "", "", "total", total["total"], total["currency"], ""]
        )
    return buffer.getvalue()
