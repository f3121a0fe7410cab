"""Report routes: the operator's revenue, cost and profit reports, and the
tenant's own credit and monthly statements."""

from __future__ import annotations

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
    StatementQuery,
)
from rentgate.api.common import query_args, tenant_id
from rentgate.auth import admin_required, tenant_required
from rentgate.db import get_session

bp = Blueprint("reports", __name__)

CSV_NOTE = "With format=csv the statement is sent as text/csv instead."


def _statement_response(tenant_key: int, month: str) -> Response:
    if not is_month(month):
        raise field_error("month", f"{month!r} is not a month", "use YYYY-MM")
    query = query_args(StatementQuery)
    session = get_session()
    document = statements.statement(
        session, tenants.get_tenant(session, tenant_key), month
    )
    if query.format == "csv":
        filename = f"statement-{document['tenant']}-{month}.csv"
        return Response(
            statements.statement_csv(document),
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename={filename}"},
        )
    return jsonify(document)


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
    description=CSV_NOTE,
    query=StatementQuery,
    responses={200: Statement},
)
@admin_required
def tenant_statement(tenant: int, month: str) -> Response:
    return _statement_response(tenant, month)


@bp.get("/statements/<month>")
@openapi.operation(
    "The calling tenant's statement of one month",
    tags=["reports"],
    auth="tenant",
    description=CSV_NOTE,
    query=StatementQuery,
    responses={200: Statement},
)
@tenant_required
def own_statement(month: str) -> Response:
    return _statement_response(tenant_id(), month)


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
