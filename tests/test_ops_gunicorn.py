"""gunicorn.conf.py: timeouts from the provider deadline, fork safety, graceful stop."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import requests
from sqlalchemy import select, text

from rentgate.models import Lease
from rentgate.runtime import Runtime
from tests.conftest import make_settings
from tests.live_server import GUNICORN_CONF, start_live_server

UPSTREAM_DELAY = 2.0


def load_config(monkeypatch, tmp_path: Path, **env: str) -> ModuleType:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("gunicorn_conf", GUNICORN_CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_timeouts_follow_deadline(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path)

    assert config.timeout == 30
    assert config.graceful_timeout == 30
    assert config.timeout > 10


def test_graceful_timeout_covers_long_deadline(monkeypatch, tmp_path):
    config = load_config(
        monkeypatch,
        tmp_path,
        RENTGATE_PROVIDER_DEADLINE="40",
        RENTGATE_WORKER_TIMEOUT="60",
    )

    assert config.graceful_timeout == 45


def test_worker_timeout_below_deadline_fails(monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match="RENTGATE_WORKER_TIMEOUT"):
        load_config(
            monkeypatch,
            tmp_path,
            RENTGATE_PROVIDER_DEADLINE="20",
            RENTGATE_WORKER_TIMEOUT="20",
        )


def test_access_log_can_be_turned_off(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path, RENTGATE_ACCESS_LOG="off")

    assert config.accesslog is None
    assert "%(U)s" in config.access_log_format
    assert "%(r)s" not in config.access_log_format


@pytest.mark.parametrize(("preload", "disposed"), [("true", True), ("false", False)])
def test_post_fork_disposes_preloaded_engine(
    monkeypatch, tmp_path, database_url, preload, disposed
):
    config = load_config(monkeypatch, tmp_path, RENTGATE_PRELOAD=preload)
    runtime = Runtime.build(make_settings(database_url))
    with runtime.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    pool = runtime.engine.pool
    app = SimpleNamespace(extensions={"rentgate": runtime})
    server = SimpleNamespace(app=SimpleNamespace(callable=app))

    config.post_fork(server, SimpleNamespace(pid=1))
    replaced = runtime.engine.pool is not pool
    runtime.close()

    assert replaced is disposed


class _SlowProvider(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's method name
        length = int(self.headers.get("Content-Length", "0"))
        order = json.loads(self.rfile.read(length))
        time.sleep(UPSTREAM_DELAY)
        body = json.dumps({"resource_id": f"slow-{order['lease_id']}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slow_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_sigterm_lets_inflight_order_finish(tmp_path, slow_upstream):
    providers = {
        "local": {"kind": "local"},
        "slow": {"kind": "http", "base_url": slow_upstream},
    }
    server = start_live_server(
        tmp_path,
        workers=1,
        env={
            "RENTGATE_PROVIDERS": json.dumps(providers),
            "RENTGATE_OFFERING_PROVIDERS": json.dumps({"compute": "slow"}),
        },
    )
    answers: list[requests.Response] = []
    order = threading.Thread(
        target=lambda: answers.append(
            requests.post(
                f"{server.base_url}/rent_resource",
                json={"resource_type": "compute", "quantity": 1},
                headers=server.headers,
                timeout=30,
            )
        )
    )
    order.start()
    time.sleep(UPSTREAM_DELAY / 2)
    stopped_at = time.monotonic()
    exit_code = server.stop()
    stop_seconds = time.monotonic() - stopped_at
    order.join(30)

    assert exit_code == 0
    assert answers[0].status_code == 201
    assert stop_seconds >= UPSTREAM_DELAY / 2 - 0.2
    runtime = Runtime.build(make_settings(server.database_url))
    with runtime.read_sessions() as session:
        lease = session.scalars(select(Lease)).one()
    runtime.close()
    assert lease.state == "active"
    assert lease.resource_id == f"slow-{lease.id}"
    after = requests.Session()
    with pytest.raises(requests.ConnectionError):
        after.get(f"{server.base_url}/healthz", timeout=2)
