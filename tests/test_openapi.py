"""The OpenAPI document: every route, its statuses, models, security and docs UI."""

from __future__ import annotations

import re

from flask import Blueprint, Flask, jsonify
from pydantic import BaseModel

from rentgate import create_app, openapi
from rentgate.api.leases import ExtendBody
from rentgate.config import Settings
from rentgate.schemas import ComputeOrder

ORDER_PATHS = ("/rent_resource", "/platform_service", "/custom_service")
LEASE_ID_PATHS = ("/leases/{lease_id}/release", "/leases/{lease_id}/extend")


def _document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_every_url_rule_is_documented(app, client):
    paths = _document(client)["paths"]
    checked = 0
    for rule in app.url_map.iter_rules():
        if openapi.is_excluded(app, rule):
            continue
        path, _ = openapi.openapi_path(rule)
        assert path in paths, f"{rule.rule} is missing from /openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {rule.rule} missing"
            checked += 1
    assert checked >= 11


def test_only_docs_ui_and_static_are_excluded(app):
    excluded = sorted(
        rule.rule for rule in app.url_map.iter_rules() if openapi.is_excluded(app, rule)
    )
    assert excluded == [
        "/docs",
        "/docs/assets/<path:filename>",
        "/static/<path:filename>",
    ]


def test_document_is_openapi_3_1(client):
    document = _document(client)

    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "rentgate"
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant or admin API key: rg_<prefix>_<secret>.",
    }


def test_problem_schema_is_the_pydantic_model(client):
    problem = _document(client)["components"]["schemas"]["Problem"]

    assert problem["required"] == ["type", "title", "status", "detail"]
    assert problem["properties"]["status"] == {"title": "Status", "type": "integer"}


def test_order_bodies_come_from_validating_models(client):
    schemas = _document(client)["components"]["schemas"]
    compute = schemas["ComputeOrder"]["properties"]["quantity"]
    rent = schemas["RentResourceBody"]

    assert schemas["ComputeOrder"] == ComputeOrder.model_json_schema()
    assert compute["maximum"] == 10_000
    assert compute["type"] == "integer"
    assert rent["discriminator"]["propertyName"] == "resource_type"
    assert set(rent["discriminator"]["mapping"]) == {"compute", "data"}
    assert schemas["ExtendBody"] == ExtendBody.model_json_schema()


def test_order_routes_declare_every_status(client):
    paths = _document(client)["paths"]
    for path in ORDER_PATHS:
        operation = paths[path]["post"]
        statuses = sorted(int(code) for code in operation["responses"])
        expected = [201, 400, 401, 402, 403, 409, 413, 415, 422, 429, 502, 503, 504]
        assert statuses == expected, path
        assert operation["security"] == [{"bearerAuth": []}]
        names = [p.get("$ref", "").rsplit("/", 1)[-1] for p in operation["parameters"]]
        assert "IdempotencyKey" in names


def test_error_responses_use_problem_media_type(client):
    paths = _document(client)["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or path == "/readyz":
                    continue
                content = response["content"]
                assert list(content) == ["application/problem+json"], (
                    f"{method} {path} {status}"
                )
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }


def test_lease_routes_declare_404_and_auth(client):
    paths = _document(client)["paths"]
    for path in LEASE_ID_PATHS:
        responses = paths[path]["post"]["responses"]
        assert "404" in responses
        assert "401" in responses
    assert "200" in paths["/leases/{lease_id}"]["get"]["responses"]


def test_public_routes_have_no_security(client):
    paths = _document(client)["paths"]
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert paths[path]["get"]["security"] == []
        assert "429" not in paths[path]["get"]["responses"]


def test_list_query_parameters_from_model(client):
    parameters = _document(client)["paths"]["/leases"]["get"]["parameters"]
    by_name = {p["name"]: p for p in parameters if "name" in p}

    assert by_name["page"]["schema"]["minimum"] == 1
    assert by_name["page"]["in"] == "query"
    assert by_name["state"]["schema"]["enum"][0] == "pending"


def test_docs_page_serves_assets_offline(client):
    page = client.get("/docs")
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)

    assert page.status_code == 200
    assert "http://" not in html
    assert "https://" not in html
    assert len(assets) == 4
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.data) > 100


def test_swagger_ui_renders_openapi_3_1(client):
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").get_data(as_text=True)

    # Swagger UI 4 rejects "openapi: 3.1.x"; version 5 is the first to render it.
    assert "OpenAPI 3.1" in bundle or "isOAS31" in bundle


class Widget(BaseModel):
    """A thing an admin manages."""

    name: str


def test_new_blueprint_declares_routes(database_url):
    app: Flask = create_app(
        Settings(_env_file=None, env="test", database_url=database_url)
    )
    admin = Blueprint("admin_example", __name__)

    @admin.post("/admin/widgets/<int:widget_id>")
    @openapi.operation(
        "Replace a widget",
        tags=["admin"],
        auth="admin",
        body=Widget,
        responses={200: Widget},
    )
    def replace_widget(widget_id: int):
        return jsonify({"name": str(widget_id)})

    app.register_blueprint(admin)
    operation = (
        app.test_client()
        .get("/openapi.json")
        .get_json()["paths"]["/admin/widgets/{widget_id}"]["post"]
    )
    app.extensions["rentgate"].close()

    assert operation["security"] == [{"bearerAuth": []}]
    assert operation["parameters"][0]["schema"] == {"type": "integer"}
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Widget"
    }
    assert sorted(operation["responses"]) == [
        "200",
        "400",
        "401",
        "403",
        "404",
        "413",
        "415",
        "422",
        "429",
    ]
