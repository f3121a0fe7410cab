"""The Postman collection covers every route and passes under newman."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live_server import start_live_server

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = ROOT / "postman" / "rentgate.postman_collection.json"
NEWMAN = ROOT / "node_modules" / ".bin" / "newman"


def _requests(items: list[dict]) -> list[dict]:
    found = []
    for item in items:
        if "item" in item:
            found += _requests(item["item"])
        else:
            found.append(item)
    return found


def _route_of(url: str) -> str:
    # {{leaseId}} and other variables stand for one path segment each.
    path = url.replace("{{baseUrl}}", "").split("?", 1)[0]
    return re.sub(r"\{\{[A-Za-z]+\}\}|00000000-[0-9a-f-]+", "<>", path)


def test_collection_covers_every_route(app):
    collection = json.loads(COLLECTION.read_text())
    covered = {
        (item["request"]["method"], _route_of(item["request"]["url"]["raw"]))
        for item in _requests(collection["item"])
    }
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/docs/assets"):
            continue
        route = re.sub(r"<[^>]+>", "<>", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (method, route) not in covered:
                missing.append(f"{method} {rule.rule}")

    assert missing == []
    assert {v["key"] for v in collection["variable"]} >= {"baseUrl", "apiKey"}


def test_every_request_has_status_test():
    collection = json.loads(COLLECTION.read_text())
    for item in _requests(collection["item"]):
        scripts = [e["script"]["exec"] for e in item["event"] if e["listen"] == "test"]
        text = "\n".join(line for script in scripts for line in script)
        assert "to.have.status(" in text, item["name"]
        assert text.count("pm.test(") >= 2, item["name"]


@pytest.mark.slow
def test_newman_run_passes(tmp_path):
    assert NEWMAN.exists(), "run `npm ci` (make install does) to get newman"
    assert shutil.which("node"), "newman needs Node.js"
    server = start_live_server(tmp_path)
    report = tmp_path / "newman.json"
    try:
        result = subprocess.run(
            [
                str(NEWMAN),
                "run",
                str(COLLECTION),
                "--env-var",
                f"baseUrl={server.base_url}",
                "--env-var",
                f"apiKey={server.api_key}",
                "--env-var",
                f"adminKey={server.admin_key}",
                "--reporters",
                "cli,json",
                "--reporter-json-export",
                str(report),
                "--bail",
                "--color",
                "off",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    run = json.loads(report.read_text())["run"]

    assert result.returncode == 0, result.stdout[-4000:]
    assert run["stats"]["assertions"]["failed"] == 0
    assert run["stats"]["requests"]["total"] == len(
        _requests(json.loads(COLLECTION.read_text())["item"])
    )
    assert run["stats"]["assertions"]["total"] >= 100
