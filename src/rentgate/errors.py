"""Errors of rentgate and their rendering as RFC 9457 problem responses.

Hierarchy::

    RentgateError                 base class; carries an HTTP status
    ├── BadRequest                400, the request is malformed
    ├── Unauthorized              401, missing or unknown API key
    ├── Forbidden                 403, key lacks the role
    ├── NotFound                  404
    ├── Conflict                  409, such as capacity exhausted
    ├── PaymentRequired           402, credit limit reached
    ├── Unprocessable             422, well formed but not acceptable
    ├── Busy                      503, database busy; has Retry-After
    ├── RateLimited               429, in rentgate.ratelimit; has Retry-After
    └── ProviderError             upstream failures (see rentgate.providers.base)
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://rentgate.dev/problems/"


class RentgateError(Exception):
    """Base class of every error that becomes a problem response."""

    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.retry_after = retry_after
        self.extra = extra or {}


class BadRequest(RentgateError):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(RentgateError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class PaymentRequired(RentgateError):
    status, title, slug = 402, "Credit limit reached", "credit-limit"


class Forbidden(RentgateError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(RentgateError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(RentgateError):
    status, title, slug = 409, "Conflict", "conflict"


class Unprocessable(RentgateError):
    status, title, slug = 422, "Unprocessable request", "unprocessable"


class Busy(RentgateError):
    status, title, slug = 503, "Service busy", "busy"


def problem_body(exc: RentgateError) -> dict[str, Any]:
    """Return the problem body of ``exc`` as a dict."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + exc.slug,
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
    }
    if exc.errors is not None:
        body["errors"] = exc.errors
    body.update(exc.extra)
    return body


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    retry_after: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (slug or str(status)),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


MAX_FIELD_ERRORS = 20

# Problem types for errors that Werkzeug raises, named like rentgate's own.
HTTP_SLUGS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Turn the first pydantic errors into ``{"field", "message", "type"}`` items."""
    items = []
    for error in exc.errors(include_url=False, include_input=False)[:MAX_FIELD_ERRORS]:
        location = [str(part) for part in error["loc"]]
        items.append(
            {
                "field": ".".join(location) or "body",
                "message": error["msg"],
                "type": error["type"],
            }
        )
    return items


def from_validation_error(exc: ValidationError) -> Unprocessable:
    """Wrap a pydantic error in a 422 whose detail names the first field."""
    errors = validation_errors(exc)
    first = errors[0]
    detail = (
        f"Field '{first['field']}' is invalid: {first['message']}. "
        "Fix the field and send the request again."
    )
    return Unprocessable(detail, errors=errors)


def is_database_busy(exc: DBAPIError) -> bool:
    """Tell whether a database error is lock contention rather than a bug."""
    text = str(exc.orig).lower()
    return (
        "database is locked" in text
        or "could not obtain lock" in text
        or ("deadlock detected" in text)
    )


def init_app(app: Flask) -> None:
    """Render every failure as a problem response, never HTML or a traceback."""

    @app.errorhandler(RentgateError)
    def handle_rentgate_error(exc: RentgateError) -> Response:
        response = problem(
            exc.status,
            exc.title,
            exc.detail,
            slug=exc.slug,
            errors=exc.errors,
            retry_after=exc.retry_after,
            extra=exc.extra,
        )
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="rentgate"'
        return response

    @app.errorhandler(IntegrityError)
    def handle_integrity_error(exc: IntegrityError) -> Response:
        log.warning(
            "integrity error on %s %s: %s", request.method, request.path, exc.orig
        )
        return problem(
            409,
            "Conflict",
            "The request conflicts with data already stored; read the current "
            "state and retry.",
            slug="conflict",
        )

    @app.errorhandler(ValidationError)
    def handle_validation_error(exc: ValidationError) -> Response:
        return handle_rentgate_error(from_validation_error(exc))

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = exc.description or exc.name
        if status == 405:
            detail = (
                f"Method {request.method} is not allowed on {request.path}; "
                f"use {', '.join(sorted(exc.valid_methods or []))}."
            )
        elif status == 404:
            detail = f"No route matches {request.path}; see /openapi.json."
        elif status == 413:
            detail = (
                "Request body is larger than "
                f"{app.config['MAX_CONTENT_LENGTH']} bytes; send a smaller body."
            )
        response = problem(
            status, exc.name, detail, slug=HTTP_SLUGS.get(status, str(status))
        )
        if status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    def handle_operational_error(exc: OperationalError) -> Response:
        if is_database_busy(exc):
            log.warning("database busy on %s %s", request.method, request.path)
            return problem(
                503,
                "Service busy",
                "The database is busy; retry after the given number of seconds.",
                slug="busy",
                retry_after=1,
            )
        log.exception("database error on %s %s", request.method, request.path)
        return problem(
            503,
            "Database unavailable",
            "The database could not be reached; retry later.",
            slug="database-unavailable",
            retry_after=5,
        )

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        detail = "An unexpected error occurred; the request id identifies it in logs."
        if app.debug:
            detail = f"{type(exc).__name__}: {exc}"
        return problem(500, "Internal error", detail, slug="internal")
