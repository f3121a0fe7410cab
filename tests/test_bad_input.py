"""Every class of bad input gets a 4xx problem body naming the field."""

from __future__ import annotations

import pytest

from tests.conftest import Seeded


def post_raw(
    client,
    seeded: Seeded,
    route: str,
    data: str | bytes,
    content_type="application/json",
):
    headers = {**seeded.headers, "Content-Type": content_type}
    return client.post(route, data=data, headers=headers)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param(
            '[{"resource_type": "compute"}]', "JSON array, not an object", id="list"
        ),
        pytest.param('"compute"', "JSON string, not an object", id="string"),
        pytest.param("42", "JSON number, not an object", id="number"),
        pytest.param("null", "JSON null, not an object", id="null"),
        pytest.param("{not json", "not valid JSON", id="malformed"),
        pytest.param("", "empty", id="empty"),
        pytest.param(
            '{"resource_type": "compute", "quantity": NaN}',
            "NaN is not valid JSON",
            id="nan",
        ),
        pytest.param(
            '{"resource_type": "compute", "quantity": Infinity}',
            "Infinity is not valid JSON",
            id="infinity",
        ),
        pytest.param(b'{"resource_type": "\xff"}', "not UTF-8", id="not-utf8"),
    ],
)
def test_body_not_object_is_400(client, seeded, data, fragment):
    response = post_raw(client, seeded, "/rent_resource", data)

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert fragment in response.get_json()["detail"]


COMPUTE_ORDER = '{"resource_type": "compute", "quantity": 1}'


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param(
            COMPUTE_ORDER.encode("utf-16"), "UTF-16 or UTF-32 byte order", id="utf16"
        ),
        pytest.param(
            COMPUTE_ORDER.encode("utf-16-be"), "NUL byte at offset 0", id="utf16-be"
        ),
        pytest.param(
            COMPUTE_ORDER.encode("utf-32-le"), "NUL byte at offset 1", id="utf32-le"
        ),
        pytest.param(
            b"\xef\xbb\xbf" + COMPUTE_ORDER.encode(),
            "UTF-8 byte order mark",
            id="utf8-bom",
        ),
        pytest.param(
            b'{"resource_type": "comp\xc3"}', "byte 0xc3 at offset 23", id="truncated"
        ),
        pytest.param(
            b'{"resource_type": "\xed\xa0\x80"}', "not UTF-8", id="encoded-surrogate"
        ),
    ],
)
def test_body_not_utf8_is_400(client, seeded, data, fragment):
    response = post_raw(client, seeded, "/rent_resource", data)

    assert response.status_code == 400
    detail = response.get_json()["detail"]
    assert fragment in detail
    assert "send UTF-8 encoded JSON" in detail


@pytest.mark.parametrize(
    ("data", "escape"),
    [
        pytest.param(
            r'{"\ud800": 1, "resource_type": "compute", "quantity": 1}',
            r"\ud800",
            id="key",
        ),
        pytest.param(
            r'{"resource_type": "compute", "quantity": 1, "gpu_model": "a\udc00"}',
            r"\udc00",
            id="value",
        ),
        pytest.param(
            r'{"resource_type": "compute", "quantity": 1, "x": [["\ud83d"]]}',
            r"\ud83d",
            id="nested-list",
        ),
    ],
)
def test_lone_surrogate_is_400(client, seeded, data, escape):
    response = post_raw(client, seeded, "/rent_resource", data)

    assert response.status_code == 400
    detail = response.get_json()["detail"]
    assert "lone surrogate" in detail
    assert escape in detail


def test_surrogate_pair_is_one_character(client, seeded):
    data = r'{"resource_type": "compute", "quantity": 1, "gpu_model": "\ud83d\ude00"}'

    response = post_raw(client, seeded, "/rent_resource", data)

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "gpu_model"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param(
            '{"resource_type": "compute", "quantity": 1, "quantity": 2}',
            "quantity",
            id="top-level",
        ),
        pytest.param(
            '{"resource_type": "compute", "quantity": 1, "x": {"a": 1, "a": 1}}',
            "a",
            id="nested",
        ),
    ],
)
def test_repeated_field_is_400(client, seeded, data, field):
    response = post_raw(client, seeded, "/rent_resource", data)

    assert response.status_code == 400
    body = response.get_json()
    assert f"names the field '{field}' more than once" in body["detail"]
    assert body["errors"] == [
        {"field": field, "message": "repeated", "type": "duplicate_field"}
    ]


@pytest.mark.parametrize(
    ("body", "field", "error_type"),
    [
        pytest.param(
            '{"resource_type": "compute", "quantity": 1e309}',
            "quantity",
            "int_type",
            id="1e309",
        ),
        pytest.param(
            {"resource_type": "compute", "quantity": True},
            "quantity",
            "int_type",
            id="bool",
        ),
        pytest.param(
            {"resource_type": "compute", "quantity": "5"},
            "quantity",
            "int_type",
            id="string-number",
        ),
        pytest.param(
            {"resource_type": "compute", "quantity": 2.5},
            "quantity",
            "int_type",
            id="float",
        ),
        pytest.param(
            {"resource_type": "compute", "quantity": 0},
            "quantity",
            "greater_than_equal",
            id="zero",
        ),
        pytest.param(
            {"resource_type": "compute", "quantity": -3},
            "quantity",
            "greater_than_equal",
            id="negative",
        ),
        pytest.param(
            {"resource_type": "compute", "quantity": 10**6},
            "quantity",
            "less_than_equal",
            id="too-many",
        ),
        pytest.param(
            {"resource_type": "compute"}, "quantity", "missing", id="missing-field"
        ),
        pytest.param(
            {"resource_type": "compute", "quantity": 1, "colour": "red"},
            "colour",
            "extra_forbidden",
            id="unknown-field",
        ),
        pytest.param(
            {"resource_type": "quantum", "quantity": 1},
            "resource_type",
            "union_tag_invalid",
            id="unknown-type",
        ),
        pytest.param(
            {"quantity": 1}, "resource_type", "union_tag_not_found", id="no-type"
        ),
        pytest.param(
            {"resource_type": 7, "quantity": 1},
            "resource_type",
            "union_tag_invalid",
            id="type-not-string",
        ),
        pytest.param(
            {"resource_type": "compute", "quantity": 1, "gpu_model": "a b"},
            "gpu_model",
            "string_pattern_mismatch",
            id="bad-pool-name",
        ),
    ],
)
def test_invalid_field_is_422(client, seeded, body, field, error_type):
    import json

    data = body if isinstance(body, str) else json.dumps(body)

    response = post_raw(client, seeded, "/rent_resource", data)

    assert response.status_code == 422
    problem = response.get_json()
    assert problem["errors"][0]["field"] == field
    assert problem["errors"][0]["type"] == error_type
    assert field in problem["detail"]


def test_wrong_content_type_is_415(client, seeded):
    response = post_raw(
        client,
        seeded,
        "/rent_resource",
        '{"resource_type": "compute", "quantity": 1}',
        "text/plain",
    )

    assert response.status_code == 415
    assert "application/json" in response.get_json()["detail"]


def test_oversized_body_is_413(client, seeded):
    body = '{"service_type": "optimization", "requirement": "' + "x" * 70_000 + '"}'

    response = post_raw(client, seeded, "/custom_service", body)

    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert "65536 bytes" in response.get_json()["detail"]


def test_long_requirement_is_422(client, seeded):
    body = {"service_type": "optimization", "requirement": "x" * 2001}

    response = client.post("/custom_service", json=body, headers=seeded.headers)

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "requirement"


def test_platform_duration_out_of_bounds(client, seeded):
    body = {"service_type": "training", "duration": 721}

    response = client.post("/platform_service", json=body, headers=seeded.headers)

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "duration"


def test_unknown_route_is_problem_404(client, seeded):
    response = client.get("/rent_everything", headers=seeded.headers)

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_wrong_method_is_405(client, seeded):
    response = client.get("/rent_resource", headers=seeded.headers)

    assert response.status_code == 405
    assert response.headers["Allow"]
    assert "POST" in response.get_json()["detail"]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 256, id="too-long"),
        pytest.param("caf\u00e9", id="non-ascii"),
    ],
)
def test_bad_idempotency_key_is_400(client, seeded, key):
    headers = {**seeded.headers, "Idempotency-Key": key}

    response = client.post(
        "/rent_resource", json={"resource_type": "data", "quantity": 1}, headers=headers
    )

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == "Idempotency-Key"


def test_chunked_oversized_body_is_413(client, seeded):
    import io

    body = b'{"resource_type": "data", "quantity": 1}' + b" " * 70_000 + b"GARBAGE"
    headers = {
        **seeded.headers,
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }

    response = client.post(
        "/rent_resource", input_stream=io.BytesIO(body), headers=headers
    )

    assert response.status_code == 413
    assert response.get_json()["type"].endswith("/payload-too-large")


def test_chunked_small_body_is_accepted(client, seeded):
    import io

    body = b'{"resource_type": "data", "quantity": 1}'
    headers = {
        **seeded.headers,
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }

    response = client.post(
        "/rent_resource", input_stream=io.BytesIO(body), headers=headers
    )

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        pytest.param(
            "[" * 20_000 + "]" * 20_000, "nested too deeply", id="deep-nesting"
        ),
        pytest.param(
            '{"resource_type": "compute", "quantity": ' + "9" * 5000 + "}",
            "too many digits",
            id="huge-integer",
        ),
        pytest.param('{"a": 1,}', "at line 1 column 9", id="trailing-comma"),
    ],
)
def test_unparsable_body_detail_is_plain(client, seeded, data, detail):
    response = post_raw(client, seeded, "/rent_resource", data)

    assert response.status_code == 400
    assert detail in response.get_json()["detail"]
    assert "sys." not in response.get_json()["detail"]


@pytest.mark.parametrize(
    "requirement",
    [pytest.param("    ", id="spaces"), pytest.param("fix\u0000it", id="nul-byte")],
)
def test_requirement_without_words_is_422(client, seeded, requirement):
    body = {"service_type": "optimization", "requirement": requirement}

    response = client.post("/custom_service", json=body, headers=seeded.headers)

    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "requirement"


def test_many_unknown_fields_cap_errors(client, seeded):
    body = {"resource_type": "compute", "quantity": 1}
    body.update({f"field{i}": i for i in range(500)})

    response = client.post("/rent_resource", json=body, headers=seeded.headers)

    assert response.status_code == 422
    assert len(response.get_json()["errors"]) == 20


def test_double_slash_is_problem_404(client, seeded):
    response = client.post("/leases//release", headers=seeded.headers)

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
