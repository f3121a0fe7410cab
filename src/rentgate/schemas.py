"""Pydantic models of order requests and responses, used to validate and for OpenAPI."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from rentgate.errors import BadRequest, Unprocessable, validation_errors

Name = Annotated[
    StrictStr,
    Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
]
Region = Annotated[
    StrictStr, Field(min_length=2, max_length=40, pattern=r"^[a-z0-9-]+$")
]
Hours = Annotated[StrictInt, Field(ge=1, le=8760, description="Lease term in hours.")]


def _check_requirement(text: str) -> str:
    if not text.strip():
        raise ValueError("must contain words, not only spaces")
    if any(ord(char) < 32 and char not in "\t\n\r" for char in text):
        raise ValueError("must not contain control characters")
    return text


Requirement = Annotated[
    StrictStr,
    Field(min_length=1, max_length=2000, description="The work, in plain words."),
    AfterValidator(_check_requirement),
]


class OrderBase(BaseModel):
    """Fields shared by every order body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    region: Region | None = Field(default=None, description="Preferred region.")


class ComputeOrder(OrderBase):
    """Rent GPU compute units from a pool."""

    resource_type: Literal["compute"]
    quantity: Annotated[StrictInt, Field(ge=1, le=10_000, description="GPU units.")]
    gpu_model: Name | None = Field(
        default=None, description="Capacity pool, such as a100-80gb."
    )
    hours: Hours | None = Field(default=None, description="Lease term; default 1.")


class DataOrder(OrderBase):
    """Rent licences to a data set."""

    resource_type: Literal["data"]
    quantity: Annotated[StrictInt, Field(ge=1, le=1000, description="Licences.")]
    dataset: Name | None = Field(
        default=None, description="Data set from the catalogue."
    )
    hours: Hours | None = Field(default=None, description="Lease term; default 24.")


class PlatformTrainingOrder(OrderBase):
    """Run model training on the platform for a number of hours."""

    service_type: Literal["training"]
    duration: Annotated[StrictInt, Field(ge=1, le=720, description="Hours.")]
    quantity: Annotated[StrictInt, Field(ge=1, le=64, description="Slots.")] = 1
    model: Name | None = None


class PlatformInferenceOrder(OrderBase):
    """Serve model inference on the platform for a number of hours."""

    service_type: Literal["inference"]
    duration: Annotated[StrictInt, Field(ge=1, le=720, description="Hours.")]
    quantity: Annotated[StrictInt, Field(ge=1, le=64, description="Slots.")] = 1
    model: Name | None = None


class CustomOptimizationOrder(OrderBase):
    """Commission custom optimization work described in plain words."""

    service_type: Literal["optimization"]
    requirement: Requirement
    duration: Annotated[StrictInt, Field(ge=1, le=720)] | None = None


class CustomTrainingOrder(OrderBase):
    """Commission custom training work described in plain words."""

    service_type: Literal["training"]
    requirement: Requirement
    duration: Annotated[StrictInt, Field(ge=1, le=720)] | None = None


RentResourceBody = Annotated[
    ComputeOrder | DataOrder, Field(discriminator="resource_type")
]
PlatformServiceBody = Annotated[
    PlatformTrainingOrder | PlatformInferenceOrder, Field(discriminator="service_type")
]
CustomServiceBody = Annotated[
    CustomOptimizationOrder | CustomTrainingOrder, Field(discriminator="service_type")
]
Order = (
    ComputeOrder
    | DataOrder
    | PlatformTrainingOrder
    | PlatformInferenceOrder
    | CustomOptimizationOrder
    | CustomTrainingOrder
)

ROUTES: dict[str, tuple[str, Any]] = {
    "rent_resource": ("resource_type", TypeAdapter(RentResourceBody)),
    "platform_service": ("service_type", TypeAdapter(PlatformServiceBody)),
    "custom_service": ("service_type", TypeAdapter(CustomServiceBody)),
}

OFFERING_OF = {
    ComputeOrder: "compute",
    DataOrder: "data",
    PlatformTrainingOrder: "platform_training",
    PlatformInferenceOrder: "platform_inference",
    CustomOptimizationOrder: "custom_optimization",
    CustomTrainingOrder: "custom_training",
}


JSON_TYPE_NAMES = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class _ConstantError(ValueError):
    """A JSON body used NaN or Infinity, which standard JSON does not allow."""


def _reject_constant(name: str) -> Any:
    raise _ConstantError(f"{name} is not valid JSON; send a finite number")


UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _decode_utf8(raw: bytes) -> str:
    """Decode a body as strict UTF-8, or raise 400 naming what else it is.

    ``json.loads`` given bytes would also accept UTF-16, UTF-32 and a leading
    byte order mark, which RFC 8259 (section 8.1) does not allow for JSON
    sent over a network.
    """
    if raw.startswith(UTF8_BOM):
        raise BadRequest(
            "Request body starts with a UTF-8 byte order mark, which JSON must "
            "not have; send UTF-8 encoded JSON without it."
        )
    if raw.startswith(UTF16_BOMS):
        raise BadRequest(
            "Request body is not UTF-8: it starts with a UTF-16 or UTF-32 byte "
            "order mark; send UTF-8 encoded JSON."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"Request body is not UTF-8: byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start} is invalid; send UTF-8 encoded JSON."
        ) from None
    nul = text.find("\x00")
    if nul != -1:
        # JSON allows no raw NUL anywhere, but UTF-16 and UTF-32 text of ASCII
        # characters is full of them.
        raise BadRequest(
            f"Request body contains a NUL byte at offset {nul}, as UTF-16 or "
            "UTF-32 text does; send UTF-8 encoded JSON."
        )
    return text


def _find_lone_surrogate(payload: Any) -> str | None:
    """Return the first unpaired surrogate in the keys and strings, or None."""
    pending = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return value[exc.start]
    return None


class _DuplicateFieldError(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of repeated names, so a reader of the body and
    # the gateway could see different values for one field.
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _DuplicateFieldError(name)
        result[name] = value
    return result


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object of finite values."""
    if not raw.strip():
        raise BadRequest("Request body is empty; send a JSON object.")
    text = _decode_utf8(raw)
    try:
        payload = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_unique_object
        )
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"Request body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}."
        ) from None
    except _ConstantError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}.") from None
    except _DuplicateFieldError as exc:
        raise BadRequest(
            f"Request body names the field {exc.name!r} more than once; send "
            "each field once.",
            errors=[
                {"field": exc.name, "message": "repeated", "type": "duplicate_field"}
            ],
        ) from None
    except ValueError:
        # Python refuses integers of more than 4300 digits (sys.int_info).
        raise BadRequest(
            "Request body has a number with too many digits; send at most 4300."
        ) from None
    except RecursionError:
        raise BadRequest("Request body is nested too deeply; flatten it.") from None
    # Strict UTF-8 text has no surrogates, so only a \u escape can make one.
    if "\\u" in text:
        surrogate = _find_lone_surrogate(payload)
        if surrogate is not None:
            escape = f"\\u{ord(surrogate):04x}"
            raise BadRequest(
                f"Request body is not valid JSON: the escape {escape} is a lone "
                "surrogate; pair a high surrogate (\\ud800-\\udbff) with a low "
                "one (\\udc00-\\udfff), or send the character itself."
            )
    if not isinstance(payload, dict):
        kind = JSON_TYPE_NAMES.get(type(payload), "value")
        raise BadRequest(
            f"Request body is a JSON {kind}, not an object; send a JSON object."
        )
    return payload


def _field_errors(
    exc: ValidationError, discriminator: str, payload: dict[str, Any]
) -> list[dict[str, Any]]:
    # A tagged union prefixes each location with the tag; clients know fields
    # by their own names, so the tag is dropped.
    tag = payload.get(discriminator)
    items = validation_errors(exc)
    for item in items:
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            item["field"] = discriminator
        elif isinstance(tag, str) and item["field"].startswith(tag + "."):
            item["field"] = item["field"][len(tag) + 1 :]
    return items


def parse_order(route: str, payload: dict[str, Any]) -> Order:
    """Validate ``payload`` for ``route`` or raise 422 naming each bad field."""
    discriminator, adapter = ROUTES[route]
    try:
        return adapter.validate_python(payload)
    except ValidationError as exc:
        errors = _field_errors(exc, discriminator, payload)
        first = errors[0]
        if first["field"] == discriminator:
            choices = _choices(route)
            detail = (
                f"Field '{discriminator}' must be one of {choices}; "
                f"got {payload.get(discriminator)!r}."
            )
        else:
            detail = (
                f"Field '{first['field']}' is invalid: {first['message']}. "
                "Fix the field and send the request again."
            )
        raise Unprocessable(detail, errors=errors) from None


def _choices(route: str) -> str:
    values = {
        "rent_resource": "'compute', 'data'",
        "platform_service": "'training', 'inference'",
        "custom_service": "'optimization', 'training'",
    }
    return values[route]


class LeaseOut(BaseModel):
    """A lease as the API shows it; money as decimal strings."""

    id: str
    offering: str
    provider: str
    state: Literal["pending", "active", "released", "expired", "failed"]
    quantity: int
    hours: int | None
    unit: Literal["order", "unit", "unit_hour"]
    unit_price: str
    amount: str
    currency: str
    resource_id: str | None
    pool: str | None
    details: dict[str, Any]
    failure_reason: str | None
    created_at: datetime
    activated_at: datetime | None
    failed_at: datetime | None
    ended_at: datetime | None
    expires_at: datetime | None


class OrderOut(BaseModel):
    """The 201 response to an order, keeping the original `status` and `resource_id`."""

    status: Literal["success"]
    resource_id: str
    lease: LeaseOut


class LeasePage(BaseModel):
    """One page of leases, newest first."""

    items: list[LeaseOut]
    page: int
    per_page: int
    total: int


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem body used by every error response."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
