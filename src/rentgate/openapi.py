"""The OpenAPI 3.1 document, built from the pydantic models that validate requests.

Each view declares its contract with the ``operation`` decorator, placed
between the route decorator and the auth decorator::

    @bp.post("/admin/tenants")
    @openapi.operation(
        "Create a tenant",
        tags=["admin"],
        auth="admin",
        body=TenantIn,
        responses={201: TenantOut, 409: "A tenant with this name exists."},
    )
    @admin_required
    def create_tenant() -> Response: ...

The decorator only stores an ``Operation`` on the view function. When
``/openapi.json`` is first requested, ``build_document`` walks the app's URL
map, reads the operation of every rule's view and turns it into a path item.
A blueprint therefore needs no other registration: declaring its views is
enough. Views that must stay out of the document (the docs UI and its assets)
use ``exclude``; a test checks that every other URL rule is documented.

``responses`` maps a status code to a pydantic model (or any type a
``TypeAdapter`` accepts), which is sent as JSON, or to a description. An
error status with a description carries the ``Problem`` body as
``application/problem+json``. A body that is no named model, such as an
annotated union or a ``TypeAdapter``, needs ``body_name``.

The decorator adds the statuses that follow from the declaration itself:
401 and 403 with ``auth``, 400, 413, 415 and 422 with ``body``, 422 with
``query``, 404 with a path parameter, 400, 409 and 422 with
``idempotency_key``, and 429 unless ``rate_limited`` is false.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Flask
from openapi_pydantic import OpenAPI
from pydantic import BaseModel, TypeAdapter
from werkzeug.routing import IntegerConverter, Rule, UnicodeConverter

from rentgate.schemas import Problem

F = TypeVar("F", bound=Callable[..., Any])

OPENAPI_VERSION = "3.1.0"
ATTRIBUTE = "__rentgate_openapi__"
EXCLUDED = "__rentgate_openapi_excluded__"
PROBLEM_MEDIA_TYPE = "application/problem+json"

STANDARD_ERRORS = {
    400: "The body is not JSON, not an object, or a header is malformed.",
    401: "The API key is missing, unknown or revoked.",
    403: "The API key does not have the role this route needs.",
    404: "No such resource for this tenant.",
    409: "A request with the same Idempotency-Key is still running.",
    413: "The body is larger than the configured maximum.",
    415: "The Content-Type is not application/json.",
    422: "A field, query parameter or the Idempotency-Key reuse is invalid.",
    429: "The API key sent more requests than its rate limit allows.",
}


class SegmentConverter(UnicodeConverter):
    """The default path converter, without control characters.

    PostgreSQL raises an error for a NUL character in text, so a ``%00`` in an
    id would end in a 500. With this converter such a path matches no route
    and gets a 404.
    """

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # noqa: A002
        super().__init__(map, *args, **kwargs)
        self.regex = r"[^/\x00-\x1f\x7f]+"


SEGMENT_PATTERN = "^[^/\\x00-\\x1f\\x7f]+$"

# Ids are INTEGER columns, 32-bit on PostgreSQL; a larger number in a path
# would overflow the database driver, so it matches no route instead.
MAX_ID = 2_147_483_647


class IdConverter(IntegerConverter):
    """The ``int`` path converter, bounded to the range of an INTEGER column."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # noqa: A002
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


@dataclass(frozen=True)
class Operation:
    """The documented contract of one view: inputs, security and responses."""

    summary: str
    tags: tuple[str, ...] = ()
    description: str = ""
    auth: Literal["tenant", "admin"] | None = None
    body: Any = None
    body_name: str | None = None
    query: type[BaseModel] | None = None
    responses: Mapping[int, Any] = field(default_factory=dict)
    response_media_type: str = "application/json"
    idempotency_key: bool = False
    rate_limited: bool = True
    response_headers: Mapping[int, Mapping[str, dict[str, Any]]] = field(
        default_factory=dict
    )


def operation(
    summary: str,
    *,
    tags: list[str] | tuple[str, ...] = (),
    description: str = "",
    auth: Literal["tenant", "admin"] | None = None,
    body: Any = None,
    body_name: str | None = None,
    query: type[BaseModel] | None = None,
    responses: Mapping[int, Any] | None = None,
    response_media_type: str = "application/json",
    idempotency_key: bool = False,
    rate_limited: bool = True,
    response_headers: Mapping[int, Mapping[str, dict[str, Any]]] | None = None,
) -> Callable[[F], F]:
    """Attach an ``Operation`` to a view, as the module docstring shows."""
    spec = Operation(
        summary=summary,
        tags=tuple(tags),
        description=description,
        auth=auth,
        body=body,
        body_name=body_name,
        query=query,
        responses=dict(responses or {}),
        response_media_type=response_media_type,
        idempotency_key=idempotency_key,
        rate_limited=rate_limited,
        response_headers=dict(response_headers or {}),
    )

    def decorate(view: F) -> F:
        setattr(view, ATTRIBUTE, spec)
        return view

    return decorate


def exclude(view: F) -> F:
    """Keep a view out of the document, such as the docs page itself."""
    setattr(view, EXCLUDED, True)
    return view


def is_excluded(app: Flask, rule: Rule) -> bool:
    """Tell whether ``rule`` is the static route or a view marked ``exclude``."""
    if rule.endpoint == "static":
        return True
    view = app.view_functions.get(rule.endpoint)
    return bool(getattr(view, EXCLUDED, False))


def operation_of(app: Flask, rule: Rule) -> Operation | None:
    """Return the declared operation of the view behind ``rule``, if any."""
    return getattr(app.view_functions.get(rule.endpoint), ATTRIBUTE, None)


def openapi_path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """Turn ``/leases/<lease_id>`` into ``/leases/{lease_id}`` and its parameters."""
    parameters = []
    for converter, name in _parse_rule(rule):
        schema: dict[str, Any] = {"type": "string", "pattern": SEGMENT_PATTERN}
        if converter == "int":
            schema = {"type": "integer"}
        elif converter == "uuid":
            schema = {"type": "string", "format": "uuid"}
        parameters.append(
            {"name": name, "in": "path", "required": True, "schema": schema}
        )
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
    return path, parameters


def _parse_rule(rule: Rule) -> list[tuple[str, str]]:
    # Werkzeug writes a variable as <name> or <converter(arguments):name>.
    items = []
    for match in re.finditer(r"<(?:([^:<>(]+)(?:\([^)]*\))?:)?([^<>]+)>", rule.rule):
        items.append((match.group(1) or "default", match.group(2)))
    return items


class _Schemas:
    """Collects the JSON Schemas of every model into ``components.schemas``."""

    def __init__(self) -> None:
        self.types: dict[str, Any] = {}

    def ref(self, name: str, type_: Any) -> dict[str, Any]:
        self.types.setdefault(name, type_)
        return {"$ref": f"#/components/schemas/{name}"}

    def ref_for(self, type_: Any) -> dict[str, Any]:
        return self.ref(_schema_name(type_), type_)

    def components(self) -> dict[str, Any]:
        inputs = [
            (name, "validation", _adapter(type_)) for name, type_ in self.types.items()
        ]
        mapping, definitions = TypeAdapter.json_schemas(
            inputs, ref_template="#/components/schemas/{model}"
        )
        schemas = dict(definitions.get("$defs", {}))
        for (name, _mode), schema in mapping.items():
            if schema.get("$ref") != f"#/components/schemas/{name}":
                schemas[name] = schema
        return schemas


def _adapter(type_: Any) -> TypeAdapter[Any]:
    return type_ if isinstance(type_, TypeAdapter) else TypeAdapter(type_)


def _schema_name(type_: Any) -> str:
    name = getattr(type_, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(
            f"{type_!r} has no name to file it under in components.schemas; "
            "pass a pydantic model, or give the operation a body_name."
        )
    return name


def _problem_response(description: str, headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers,
        "content": {
            PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _header(description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "description": description,
        "required": required,
        "schema": {"type": "string"},
    }


def _error_statuses(spec: Operation, has_path_parameters: bool) -> dict[int, str]:
    statuses: dict[int, str] = {}
    if spec.auth is not None:
        statuses[401] = STANDARD_ERRORS[401]
        statuses[403] = STANDARD_ERRORS[403]
    if spec.body is not None:
        for status in (400, 413, 415, 422):
            statuses[status] = STANDARD_ERRORS[status]
    if spec.query is not None:
        statuses[422] = STANDARD_ERRORS[422]
    if has_path_parameters:
        statuses[404] = STANDARD_ERRORS[404]
    if spec.idempotency_key:
        for status in (400, 409, 422):
            statuses[status] = STANDARD_ERRORS[status]
    if spec.rate_limited:
        statuses[429] = STANDARD_ERRORS[429]
    return statuses


def _responses(
    spec: Operation, has_path_parameters: bool, schemas: _Schemas
) -> dict[str, Any]:
    request_id = {"X-Request-ID": _header("Id of this request.", required=True)}
    declared = dict(_error_statuses(spec, has_path_parameters))
    declared.update(spec.responses)
    responses: dict[str, Any] = {}
    for status in sorted(declared):
        value = declared[status]
        headers = dict(request_id)
        if status in (429,):
            headers["Retry-After"] = _header(
                "Seconds to wait before the next request.", required=True
            )
        elif status in (409, 503):
            headers["Retry-After"] = _header("Seconds to wait before retrying.")
        headers.update(spec.response_headers.get(status, {}))
        if status >= 400 and (value is None or isinstance(value, str)):
            text = value or STANDARD_ERRORS.get(status, "")
            responses[str(status)] = _problem_response(text, headers)
            continue
        response: dict[str, Any] = {"description": _describe(value), "headers": headers}
        if spec.response_media_type != "application/json":
            media: dict[str, Any] = {"schema": {"type": "string"}}
            response["content"] = {spec.response_media_type: media}
        elif value is not None and not isinstance(value, str):
            response["content"] = {
                "application/json": {"schema": schemas.ref_for(value)}
            }
        responses[str(status)] = response
    return responses


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return value
    doc = (getattr(value, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else "Success."


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    parameters = []
    for name, property_schema in schema.get("properties", {}).items():
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": _flatten_optional(property_schema),
            }
        )
    return parameters


def _flatten_optional(schema: dict[str, Any]) -> dict[str, Any]:
    # A query parameter is either absent or text, never JSON null, so the
    # ``anyOf [X, null]`` that pydantic writes for ``X | None`` becomes X.
    options = schema.get("anyOf")
    if not options:
        return schema
    kept = [option for option in options if option.get("type") != "null"]
    if len(kept) != 1:
        return schema
    flattened = {key: value for key, value in schema.items() if key != "anyOf"}
    flattened.update(kept[0])
    flattened.pop("default", None)
    return flattened


def _operation_object(
    spec: Operation,
    endpoint: str,
    method: str,
    path_parameters: list[dict[str, Any]],
    schemas: _Schemas,
) -> dict[str, Any]:
    parameters = list(path_parameters)
    if spec.query is not None:
        parameters += _query_parameters(spec.query)
    if spec.idempotency_key:
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
    parameters.append({"$ref": "#/components/parameters/RequestId"})
    result: dict[str, Any] = {
        "operationId": f"{endpoint.replace('.', '_')}_{method.lower()}",
        "summary": spec.summary,
        "tags": list(spec.tags),
        "parameters": parameters,
        "responses": _responses(spec, bool(path_parameters), schemas),
    }
    if spec.description:
        result["description"] = spec.description
    if spec.body is not None:
        name = spec.body_name or _schema_name(spec.body)
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(name, spec.body)}},
        }
    result["security"] = [{"bearerAuth": []}] if spec.auth else []
    return result


def build_document(app: Flask, *, title: str, version: str) -> dict[str, Any]:
    """Build the document of every declared route of ``app`` and validate it."""
    schemas = _Schemas()
    schemas.ref("Problem", Problem)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda item: item.rule):
        spec = operation_of(app, rule)
        if spec is None or is_excluded(app, rule):
            continue
        path, path_parameters = openapi_path(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation_object(
                spec, rule.endpoint, method, path_parameters, schemas
            )
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Rent compute, data sets, platform training and inference, and "
                "custom work. Send the API key as 'Authorization: Bearer <key>'. "
                "Every error is an RFC 9457 problem body."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas.components(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant or admin API key: rg_<prefix>_<secret>.",
                }
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": (
                        "Replays the stored answer of an earlier request with the "
                        "same key and body; the same key with another body is 422."
                    ),
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "pattern": "^[ -~]+$",
                    },
                },
                "RequestId": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "required": False,
                    "description": (
                        "Id echoed in the answer and the logs; one is generated "
                        "when it is missing or not 1 to 128 printable ASCII "
                        "characters."
                    ),
                    "schema": {"type": "string"},
                },
            },
        },
    }
    # openapi-pydantic checks the structure, but the dict is served as built
    # because a round trip through its models drops ``default: null`` and
    # turns integer bounds into floats.
    OpenAPI.model_validate(document)
    return document
