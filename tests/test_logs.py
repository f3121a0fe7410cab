"""JSON log lines per request and provider call, and no secret in any log."""

from __future__ import annotations

import json
import logging

import pytest
import requests
from sqlalchemy.engine import make_url

from rentgate.logs import JsonFormatter, redact
from tests.live_server import start_live_server

DB_PASSWORD = "Pg-Secret-7731"
FAKE_KEY = "rg_0123456789ab_NotARealSecretButShapedLikeOne-xyz"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("key rg_a08362f6bcd3_AKDWeO_PT1iVV6_zvU8QfMxxhoL9mIpgd7gSUdo92J8", "AKDWeO"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("postgresql+psycopg://app:hunter2@db:5432/rentgate", "hunter2"),
        ("redis://:r3dis-pass@127.0.0.1:6379/0", "r3dis-pass"),
        ("host=db user=app password=hunter2 dbname=x", "hunter2"),
    ],
    ids=["api-key", "bearer", "database-url", "redis-url", "dsn"],
)
def test_redact_masks_secret(text, secret):
    masked = redact(text)

    assert secret not in masked
    assert "***" in masked


def test_redact_keeps_plain_urls():
    text = "GET http://127.0.0.1:5000/leases/abc status=200"

    assert redact(text) == text


def test_json_formatter_masks_exception_text():
    logger = logging.getLogger("rentgate.tests.logs")
    try:
        raise RuntimeError(f"cannot connect to postgresql://u:{DB_PASSWORD}@h/db")
    except RuntimeError:
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "failed with key %s",
            (FAKE_KEY,),
            exc_info=__import__("sys").exc_info(),
            extra={"lease_id": "l-1"},
        )
    line = JsonFormatter().format(record)
    entry = json.loads(line)

    assert DB_PASSWORD not in line
    assert "NotARealSecret" not in line
    assert entry["lease_id"] == "l-1"
    assert entry["level"] == "ERROR"
    assert "RuntimeError" in entry["exception"]


def _with_password(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        return database_url
    url = make_url(database_url).set(password=DB_PASSWORD)
    return url.render_as_string(hide_password=False)


def _json_lines(text: str) -> list[dict]:
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


@pytest.mark.slow
def test_live_logs_have_fields_and_no_secrets(database_url, tmp_path):
    url = _with_password(database_url)
    server = start_live_server(
        tmp_path,
        database_url=url,
        env={"RENTGATE_LOG_LEVEL": "DEBUG", "RENTGATE_GUNICORN_LOG_LEVEL": "debug"},
    )
    try:
        order = requests.post(
            f"{server.base_url}/rent_resource",
            json={"resource_type": "compute", "quantity": 1},
            headers={**server.headers, "X-Request-ID": "trace-abc.1"},
            timeout=30,
        )
        bogus = requests.get(
            f"{server.base_url}/leases",
            headers={"Authorization": f"Bearer {FAKE_KEY}"},
            timeout=30,
        )
        missing = requests.get(
            f"{server.base_url}/leases/nope?token={server.api_key}",
            headers=server.headers,
            timeout=30,
        )
    finally:
        server.stop()
    text = server.logs()
    entries = _json_lines(text)
    secret = server.api_key.split("_", 2)[2]
    lease_id = order.json()["lease"]["id"]

    assert order.status_code == 201
    assert order.headers["X-Request-ID"] == "trace-abc.1"
    assert bogus.status_code == 401
    assert missing.status_code == 404
    assert secret not in text
    assert "NotARealSecret" not in text
    assert DB_PASSWORD not in text
    request_line = next(
        e for e in entries if e.get("route") == "/rent_resource" and "status" in e
    )
    assert request_line["request_id"] == "trace-abc.1"
    assert request_line["tenant_id"] >= 1
    assert request_line["status"] == 201
    assert request_line["method"] == "POST"
    assert request_line["duration_ms"] > 0
    call = next(e for e in entries if e["logger"] == "rentgate.providers.calls")
    assert call["provider"] == "local"
    assert call["action"] == "rent"
    assert call["lease_id"] == lease_id
    assert call["status"] == "ok"
    assert call["elapsed_ms"] >= 0
    assert call["request_id"] == "trace-abc.1"
