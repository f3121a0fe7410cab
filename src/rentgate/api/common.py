"""Request parsing and response helpers shared by the views."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import Response, current_app, g, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from rentgate.errors import BadRequest, RentgateError, from_validation_error
from rentgate.ordering import Outcome
from rentgate.runtime import Runtime
from rentgate.schemas import parse_json_object

M = TypeVar("M", bound=BaseModel)


class UnsupportedMediaType(RentgateError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


def runtime() -> Runtime:
    """Return the runtime of the current app."""
    return current_app.extensions["rentgate"]


def tenant_id() -> int:
    """Return the tenant of the authenticated caller."""
    return int(g.caller.tenant_id)


def json_body() -> dict[str, Any]:
    """Read the body as a JSON object, checking Content-Type and size first."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got "
            f"'{request.content_type or 'none'}'; send the header "
            "'Content-Type: application/json'."
        )
    return parse_json_object(read_body())


def read_body() -> bytes:
    """Return the raw body, or raise 413 when it exceeds the configured size.

    A chunked body has no Content-Length for Werkzeug to check up front, so the
    body is read one byte past the limit to detect an oversized one.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None:
        return request.get_data(cache=True)
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge()
    return data


def validate(model: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` with ``model``, raising a 422 that names the field."""
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def query_args(model: type[M]) -> M:
    """Validate the query string with ``model``; numbers arrive as text."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def idempotency_key() -> str | None:
    """Return the Idempotency-Key header, or raise 400 if it is malformed."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(" " <= char <= "~" for char in key):
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters; "
            "a UUID works well.",
            errors=[
                {
                    "field": "Idempotency-Key",
                    "message": "must be 1 to 255 printable ASCII characters",
                    "type": "header_invalid",
                }
            ],
        )
    return key


def outcome_response(outcome: Outcome) -> Response:
    """Turn a service outcome into a response."""
    response = jsonify(outcome.body)
    response.status_code = outcome.status
    if outcome.status >= 400:
        response.mimetype = "application/problem+json"
    for name, value in outcome.headers.items():
        response.headers[name] = value
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
