"""rentgate: an HTTP gateway that rents out AI infrastructure and books revenue."""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, g, request

from rentgate.config import Settings, load_settings
from rentgate.runtime import Runtime

__all__ = ["create_app"]

log = logging.getLogger(__name__)

# A client's X-Request-ID is kept only if it cannot forge log fields or markup.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app from ``settings`` or from the environment."""
    from rentgate import db, errors, logs, metrics, openapi, ratelimit
    from rentgate.api import admin, docs, health, leases, orders, reports

    # Defaults and the configuration source.
    settings = settings or load_settings()
    logs.configure_logging(settings.log_level, settings.log_format)
    app = Flask(__name__)
    app.config.update(
        DEBUG=settings.debug,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        PROPAGATE_EXCEPTIONS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.converters["default"] = openapi.SegmentConverter
    app.url_map.converters["int"] = openapi.IdConverter
    # Return 404 problems instead of HTML redirects for "//" or a trailing "/".
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False

    # Extensions: the database, providers, request ids, request logs, metrics
    # and rate limits. Request ids come first so every later hook can log them.
    app.extensions["rentgate"] = Runtime.build(settings)
    db.init_app(app)
    _init_request_ids(app)
    logs.init_app(app)
    metrics.init_app(app)
    ratelimit.init_app(app, settings)

    # Blueprints.
    app.register_blueprint(health.bp)
    app.register_blueprint(orders.bp)
    app.register_blueprint(leases.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(reports.bp)

    # Error handlers.
    errors.init_app(app)
    return app


def _init_request_ids(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        valid = REQUEST_ID_PATTERN.fullmatch(incoming) is not None
        g.request_id = incoming if valid else uuid.uuid4().hex

    @app.after_request
    def return_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response
