"""Schemathesis against the live /openapi.json of a gunicorn-served gateway.

On SQLite every operation gets at least 200 generated cases that follow the
document and 25 that break it. PostgreSQL gets a shorter pass of 10 and 3
with the same checks, because it rejects some input that SQLite stores, such
as NUL characters in text. Generating the cases is CPU-bound (measured at
about 20 ms of CPU per case on a 2-core machine), so this is the slowest test
of the suite.

Each response must not be a server error and must have a documented status,
content type, headers and body; invalid input must be rejected, and
authentication must not be ignored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.live_server import LiveServer, start_live_server

# (cases that follow the document, cases that break it) per operation
CASES = {"sqlite": (200, 25), "postgresql": (10, 3)}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# ignored_auth sends two extra requests per 2xx response, so it runs on the first
# cases of each operation only; test_security checks every operation for 401.
IGNORED_AUTH_CASES = 10


@pytest.fixture
def live(database_url, tmp_path) -> Iterator[LiveServer]:
    server = start_live_server(
        tmp_path,
        database_url=database_url,
        env={"RENTGATE_RATE_LIMIT": "100000/second", "RENTGATE_ACCESS_LOG": "off"},
    )
    yield server
    server.stop()


def _run(operation, mode, count, live, session, counts) -> None:
    label = f"{operation.label} {mode.value}"

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        counts[label] += 1
        checks = CHECKS
        if counts[label] <= IGNORED_AUTH_CASES:
            checks = [*CHECKS, ignored_auth]
        case.call_and_validate(
            base_url=live.base_url, session=session, headers=live.headers, checks=checks
        )

    check()


def _can_break(operation) -> bool:
    # Only a body or a query or path parameter can be made invalid; headers
    # such as X-Request-ID accept any value.
    raw = operation.definition.raw
    locations = {parameter.get("in") for parameter in raw.get("parameters", [])}
    return "requestBody" in raw or bool(locations & {"query", "path"})


@pytest.mark.slow
def test_generated_cases_match_document(live):
    backend = "sqlite" if live.database_url.startswith("sqlite") else "postgresql"
    positive, negative = CASES[backend]
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")
    session = requests.Session()
    counts: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]

    for operation in operations:
        _run(operation, GenerationMode.POSITIVE, positive, live, session, counts)
        if _can_break(operation):
            _run(operation, GenerationMode.NEGATIVE, negative, live, session, counts)

    assert len(operations) >= 11
    for operation in operations:
        assert counts[f"{operation.label} positive"] >= positive, counts
