"""Report routes: the operator's revenue, cost and profit reports, and the
tenant's own credit and monthly statements."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify

from rentgate import openapi
from rentgate.accounting import reports, statements, tenants
from rentgate.accounting.common import field_error
from rentgate.accounting.months import is_month
from rentgate.accounting.schemas import (
    CostReport,
    CreditOut,
    ProfitReport,
    ReportQuery,
    RevenueReport,
    Statement,
)
from rentgate.api.common import query_args, tenant_id
from rentgate.auth import admin_required, tenant_required
from rentgate.db import get_session

bp = Blueprint("reports", __name__)

MONTH_INVALID = "The month is not YYYY-MM."
CSV_DESCRIPTION = (
    "One row per ledger entry, then one total row per currency: id, booked_at, "
    "lease_id, offering, kind, amount, currency, note."
)


def _statement(tenant_key: int, month: str) -> dict:
    if not is_month(month):
        raise field_error("month", f"{month!r} is not a month", "use YYYY-MM")
    session = get_session()
    return statements.statement(session, tenants.get_tenant(session, tenant_key), month)


def _csv_response(document: dict) -> Response:
    # Tenant names made outside the API may hold quotes or slashes, so the
    # file name keeps only characters that are safe in a header.
    tenant = re.sub(r"[^A-Za-z0-9._-]", "_", str(document["tenant"]))
    filename = f"statement-{tenant}-{document['month']}.csv"
    return Response(
        statements.statement_csv(document),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/admin/reports/revenue")
@openapi.operation(
    "Revenue by month and offering",
    tags=["reports"],
    auth="admin",
    query=ReportQuery,
    responses={200: RevenueReport},
)
@admin_required
def revenue() -> Response:
    session = get_session()
    period = reports.report_period(session, query_args(ReportQuery))
    return jsonify(reports.revenue_report(session, period))


@bp.get("/admin/reports/costs")
@openapi.operation(
    "Costs by month and kind",
    tags=["reports"],
    auth="admin",
    query=ReportQuery,
    responses={200: CostReport},
)
@admin_required
def cost() -> Response:
    session = get_session()
    query = query_args(ReportQuery)
    period = reports.report_period(session, query)
    return jsonify(reports.cost_report(session, period, query.capex))


@bp.get("/admin/reports/profit")
@openapi.operation(
    "Profit by month, cumulative profit and the break-even month",
    tags=["reports"],
    auth="admin",
    query=ReportQuery,
    responses={200: ProfitReport},
)
@admin_required
def profit() -> Response:
    session = get_session()
    query = query_args(ReportQuery)
    period = reports.report_period(session, query)
    return jsonify(reports.profit_report(session, period, query.capex))


@bp.get("/admin/tenants/<int:tenant>/statements/<month>")
@openapi.operation(
    "A tenant's statement of one month",
    tags=["reports"],
    auth="admin",
    responses={200: Statement, 422: MONTH_INVALID},
)
@admin_required
def tenant_statement(tenant: int, month: str) -> Response:
    return jsonify(_statement(tenant, month))


@bp.get("/admin/tenants/<int:tenant>/statements/<month>/csv")
@openapi.operation(
    "A tenant's statement of one month as CSV",
    tags=["reports"],
    auth="admin",
    responses={200: CSV_DESCRIPTION, 422: MONTH_INVALID},
    response_media_type="text/csv",
)
@admin_required
def tenant_statement_csv(tenant: int, month: str) -> Response:
    return _csv_response(_statement(tenant, month))


@bp.get("/statements/<month>")
@openapi.operation(
    "The calling tenant's statement of one month",
    tags=["reports"],
    auth="tenant",
    responses={200: Statement, 422: MONTH_INVALID},
)
@tenant_required
def own_statement(month: str) -> Response:
    return jsonify(_statement(tenant_id(), month))


@bp.get("/statements/<month>/csv")
@openapi.operation(
    "The calling tenant's statement of one month as CSV",
    tags=["reports"],
    auth="tenant",
    responses={200: CSV_DESCRIPTION, 422: MONTH_INVALID},
    response_media_type="text/csv",
)
@tenant_required
def own_statement_csv(month: str) -> Response:
    return _csv_response(_statement(tenant_id(), month))


@bp.get("/credit")
@openapi.operation(
    "The calling tenant's credit limit, used and remaining credit this month",
    tags=["reports"],
    auth="tenant",
    responses={200: CreditOut},
)
@tenant_required
def credit() -> Response:
    session = get_session()
    tenant = tenants.get_tenant(session, tenant_id())
    return jsonify(tenants.credit_to_dict(session, tenant))
