"""The OpenAPI document at ``/openapi.json`` and Swagger UI at ``/docs``.

Swagger UI's files come from the ``flask-swagger-ui`` package (Swagger UI 5,
which renders OpenAPI 3.1), so ``/docs`` works with no network access.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    render_template_string,
    send_from_directory,
    url_for,
)
from pydantic import RootModel

from rentgate import openapi

bp = Blueprint("docs", __name__)


class OpenAPIDocument(RootModel[dict[str, Any]]):
    """An OpenAPI 3.1 document."""


ASSETS = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
CACHE_KEY = "rentgate_openapi_document"

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>rentgate API</title>
  <link rel="stylesheet" href="{{ asset('swagger-ui.css') }}">
  <link rel="icon" href="{{ asset('favicon-32x32.png') }}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{{ asset('swagger-ui-bundle.js') }}"></script>
  <script src="{{ asset('swagger-ui-standalone-preset.js') }}"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: {{ spec_url | tojson }},
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
      persistAuthorization: true
    });
  </script>
</body>
</html>
"""


def document() -> dict[str, Any]:
    """Return the app's OpenAPI document, built once per app."""
    cached = current_app.extensions.get(CACHE_KEY)
    if cached is None:
        cached = openapi.build_document(
            current_app, title="rentgate", version=_package_version()
        )
        current_app.extensions[CACHE_KEY] = cached
    return cached


def _package_version() -> str:
    try:
        return version("rentgate")
    except PackageNotFoundError:
        return "0.0.0"


@bp.get("/openapi.json")
@openapi.operation(
    "Get this OpenAPI document",
    tags=["docs"],
    rate_limited=False,
    responses={200: OpenAPIDocument},
)
def openapi_json() -> Response:
    return jsonify(document())


@bp.get("/docs")
@openapi.exclude
def swagger_ui() -> str:
    return render_template_string(
        PAGE,
        asset=lambda name: url_for("docs.asset", filename=name),
        spec_url=url_for("docs.openapi_json"),
    )


@bp.get("/docs/assets/<path:filename>")
@openapi.exclude
def asset(filename: str) -> Response:
    return send_from_directory(ASSETS, filename, max_age=86400)
