"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel
from sqlalchemy import text

from rentgate import openapi
from rentgate.api.common import runtime
from rentgate.migrations import current_revision, head_revision

bp = Blueprint("health", __name__)


class Health(BaseModel):
    """Liveness: the process serves requests."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Readiness: the database is reachable and migrated to head."""

    status: Literal["ready", "not ready"]
    checks: dict[str, Any]


@bp.get("/healthz")
@openapi.operation(
    "Check that the process is alive",
    tags=["operations"],
    rate_limited=False,
    responses={200: Health},
)
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@openapi.operation(
    "Check the database, migrations and provider circuits",
    tags=["operations"],
    rate_limited=False,
    responses={200: Readiness, 503: Readiness},
)
def readyz() -> Response:
    rt = runtime()
    checks: dict[str, object] = {}
    ready = True
    try:
        with rt.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            revision = current_revision(connection)
        head = head_revision()
        checks["database"] = "ok"
        checks["migrations"] = {"current": revision, "head": head}
        if revision != head:
            ready = False
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
        ready = False
    checks["providers"] = {
        name: breaker.current_state for name, breaker in rt.providers.breakers.items()
    }
    response = jsonify({"status": "ready" if ready else "not ready", "checks": checks})
    response.status_code = 200 if ready else 503
    return response
