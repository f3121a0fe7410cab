"""``rentgate ledger verify``: the ledger against the leases and the reports.

Checks, in order, stopping at the first mismatch:

1. every ledger entry belongs to an existing lease with the same tenant,
   offering and currency, and its sign fits its kind;
2. each lease's entries sum to what it was charged. A settled lease has
   exactly one charge, equal to the lease's amount. Each extension and refund
   equals the lease's price for the hours its note names. Pending and failed
   leases have no entries;
3. the revenue report's totals equal the plain ledger sums per currency.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from rentgate.accounting.reports import Period, first_ledger_month, revenue_by_month
from rentgate.models import Lease, LedgerEntry
from rentgate.money import format_money, to_minor
from rentgate.pricing import charge_amount

SETTLED_STATES = ("active", "released", "expired")
HOURS_IN_NOTE = re.compile(r"\b(\d+) h\b")

Progress = Callable[[int, int], None]


class LedgerMismatch(Exception):
    """The first place the ledger disagrees with a lease or a report."""


@dataclass
class VerifyResult:
    """Counts of checked leases and entries, ledger totals, and the first mismatch."""

    leases: int = 0
    entries: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    mismatch: str | None = None


def verify_ledger(
    session: Session, progress: Progress | None = None, batch: int = 2000
) -> VerifyResult:
    """Run every check and return the counts and the first mismatch."""
    result = VerifyResult()
    try:
        _check_entries(session)
        _check_leases(session, result, progress, batch)
        _check_report_totals(session, result)
    except LedgerMismatch as exc:
        result.mismatch = str(exc)
    return result


def _check_entries(session: Session) -> None:
    lease = aliased(Lease)
    row = session.execute(
        select(LedgerEntry, lease.id)
        .outerjoin(lease, lease.id == LedgerEntry.lease_id)
        .where(
            or_(
                lease.id.is_(None),
                lease.tenant_id != LedgerEntry.tenant_id,
                lease.offering != LedgerEntry.offering,
                lease.currency != LedgerEntry.currency,
            )
        )
        .order_by(LedgerEntry.id)
        .limit(1)
    ).first()
    if row is not None:
        entry, lease_id = row
        if lease_id is None:
            raise LedgerMismatch(
                f"ledger entry {entry.id} refers to lease '{entry.lease_id}', which "
                "does not exist"
            )
        raise LedgerMismatch(
            f"ledger entry {entry.id} differs from its lease '{entry.lease_id}' in "
            "tenant, offering or currency"
        )

    entry = session.scalars(
        select(LedgerEntry)
        .where(
            or_(
                LedgerEntry.kind.in_(("charge", "extension"))
                & (LedgerEntry.amount_minor < 0),
                (LedgerEntry.kind == "refund") & (LedgerEntry.amount_minor >= 0),
            )
        )
        .order_by(LedgerEntry.id)
        .limit(1)
    ).first()
    if entry is not None:
        raise LedgerMismatch(
            f"ledger entry {entry.id} is a {entry.kind} of {entry.amount_minor} minor "
            "units; charges and extensions must be positive, refunds negative"
        )


def _check_leases(
    session: Session, result: VerifyResult, progress: Progress | None, batch: int
) -> None:
    total = session.scalar(select(func.count()).select_from(Lease)) or 0
    last_id = ""
    while True:
        leases = session.scalars(
            select(Lease).where(Lease.id > last_id).order_by(Lease.id).limit(batch)
        ).all()
        if not leases:
            break
        entries: dict[str, list[LedgerEntry]] = defaultdict(list)
        for entry in session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.lease_id.in_([lease.id for lease in leases]))
            .order_by(LedgerEntry.id)
        ):
            entries[entry.lease_id].append(entry)
        for lease in leases:
            _check_lease(lease, entries.get(lease.id, []))
            for entry in entries.get(lease.id, []):
                result.totals[entry.currency] = (
                    result.totals.get(entry.currency, 0) + entry.amount_minor
                )
                result.entries += 1
        result.leases += len(leases)
        last_id = leases[-1].id
        session.expunge_all()
        if progress is not None:
            progress(result.leases, total)


def _check_lease(lease: Lease, entries: list[LedgerEntry]) -> None:
    if lease.state not in SETTLED_STATES:
        if entries:
            raise LedgerMismatch(
                f"lease '{lease.id}' is {lease.state} but has ledger entry "
                f"{entries[0].id}; only settled leases are booked"
            )
        return

    charges = [entry for entry in entries if entry.kind == "charge"]
    if len(charges) != 1:
        raise LedgerMismatch(
            f"lease '{lease.id}' is {lease.state} and has {len(charges)} charge "
            "entries instead of exactly one"
        )
    if charges[0].amount_minor != lease.amount_minor:
        raise LedgerMismatch(
            f"lease '{lease.id}' was sold for "
            f"{format_money(lease.amount_minor, lease.currency)} {lease.currency} "
            f"but its charge entry {charges[0].id} books "
            f"{format_money(charges[0].amount_minor, lease.currency)}"
        )

    expected = lease.amount_minor
    for entry in entries:
        if entry.kind == "charge":
            continue
        amount = _priced_hours(lease, entry)
        expected += -amount if entry.kind == "refund" else amount
        if abs(entry.amount_minor) != amount:
            raise LedgerMismatch(
                f"lease '{lease.id}' {entry.kind} entry {entry.id} books "
                f"{format_money(entry.amount_minor, lease.currency)} but the lease's "
                f"price for the hours in its note is "
                f"{format_money(amount, lease.currency)}"
            )
    booked = sum(entry.amount_minor for entry in entries)
    if booked != expected or booked < 0:
        raise LedgerMismatch(
            f"lease '{lease.id}' entries sum to "
            f"{format_money(booked, lease.currency)} {lease.currency} but it was "
            f"charged {format_money(expected, lease.currency)}"
        )


def _priced_hours(lease: Lease, entry: LedgerEntry) -> int:
    """Return the minor units the lease's price gives for the hours in a note."""
    match = HOURS_IN_NOTE.search(entry.note or "")
    if lease.unit != "unit_hour" or match is None:
        raise LedgerMismatch(
            f"lease '{lease.id}' has {entry.kind} entry {entry.id} with note "
            f"{entry.note!r}, but only unit-hour leases are extended or refunded "
            "and the note must name the hours"
        )
    amount = charge_amount(
        lease.unit, lease.unit_price, lease.quantity, int(match[1]), lease.currency
    )
    return to_minor(amount, lease.currency)


def _check_report_totals(session: Session, result: VerifyResult) -> None:
    sums = session.execute(
        select(LedgerEntry.currency, func.sum(LedgerEntry.amount_minor)).group_by(
            LedgerEntry.currency
        )
    ).all()
    for currency, ledger_sum in sums:
        if result.totals.get(currency, 0) != int(ledger_sum):
            raise LedgerMismatch(
                f"{currency}: lease entries sum to {result.totals.get(currency, 0)} "
                f"minor units but the ledger sums to {int(ledger_sum)}"
            )
        first = first_ledger_month(session, currency)
        last = session.scalar(
            select(func.max(LedgerEntry.booked_at)).where(
                LedgerEntry.currency == currency
            )
        )
        assert first is not None and last is not None
        report = revenue_by_month(
            session, Period(first, last.strftime("%Y-%m"), currency)
        )
        if sum(report.values()) != int(ledger_sum):
            raise LedgerMismatch(
                f"{currency}: the revenue report totals {sum(report.values())} minor "
                f"units but the ledger sums to {int(ledger_sum)}; if the ledger is "
                "right, run 'rentgate reports recompute' to sum the stored months "
                "again"
            )
