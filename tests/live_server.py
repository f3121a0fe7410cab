"""Start rentgate under gunicorn on a free 127.0.0.1 port, for end-to-end tests.

``start_live_server`` migrates and seeds the database (a new SQLite file, or
the URL given, such as the ``database_url`` fixture's PostgreSQL database),
starts gunicorn with the project's ``gunicorn.conf.py`` and waits until
``/healthz`` returns 200. It returns the base URL, the demo tenant's API key, an
admin key and a ``stop`` function that sends SIGTERM and waits for a graceful exit::

    server = start_live_server(tmp_path, database_url=database_url)
    try:
        requests.get(f"{server.base_url}/leases", headers=server.headers)
    finally:
        server.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy import select

from rentgate.auth import create_key
from rentgate.config import Settings
from rentgate.migrations import upgrade
from rentgate.models import Tenant
from rentgate.runtime import Runtime
from rentgate.seed import DEMO_TENANT, seed_demo

ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = ROOT / "gunicorn.conf.py"


@dataclass
class LiveServer:
    """A running gateway: where it listens, a tenant key and how to stop it."""

    base_url: str
    api_key: str
    admin_key: str
    database_url: str
    log_path: Path
    metrics_dir: Path
    process: subprocess.Popen[bytes]
    stop: Callable[[], int] = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def logs(self) -> str:
        """Return everything gunicorn and the app wrote so far."""
        return self.log_path.read_text(errors="replace")

    def metric_writers(self) -> set[str]:
        """Return the pids of workers that wrote Prometheus counters."""
        files = self.metrics_dir.glob("counter_*.db")
        return {path.stem.rsplit("_", 1)[1] for path in files}

    def wait_for_workers(self, count: int, timeout: float = 30.0) -> None:
        """Send concurrent /healthz requests until ``count`` workers have responded.

        A worker loads the app after the fork, so right after start-up only
        some workers may accept connections.
        """
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/healthz"
        with ThreadPoolExecutor(2 * count) as pool:
            while len(self.metric_writers()) < count:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"only {len(self.metric_writers())} of {count} workers "
                        f"answered within {timeout}s"
                    )
                list(pool.map(lambda _: requests.get(url, timeout=5), range(4 * count)))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def migrate_and_seed(database_url: str) -> str:
    """Migrate to head, load the demo data and return a new demo tenant key."""
    upgrade(database_url)
    settings = Settings(_env_file=None, env="test", database_url=database_url)  # type: ignore[call-arg]
    runtime = Runtime.build(settings)
    try:
        with runtime.transaction() as session:
            key = seed_demo(session)
            if key is None:
                tenant = session.scalars(
                    select(Tenant).where(Tenant.name == DEMO_TENANT)
                ).one()
                _, key = create_key(session, role="tenant", tenant_id=tenant.id)
    finally:
        runtime.close()
    return key


def create_admin_key(database_url: str) -> str:
    """Create an admin API key in a migrated database and return it."""
    settings = Settings(_env_file=None, env="test", database_url=database_url)  # type: ignore[call-arg]
    runtime = Runtime.build(settings)
    try:
        with runtime.transaction() as session:
            _, key = create_key(session, role="admin", tenant_id=None, label="tests")
    finally:
        runtime.close()
    return key


def start_live_server(
    tmp_path: Path,
    *,
    database_url: str | None = None,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30.0,
) -> LiveServer:
    """Start gunicorn on a free port and return once it serves ``/healthz``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{tmp_path / 'live.db'}"
    key = migrate_and_seed(url)
    admin_key = create_admin_key(url)
    port = free_port()
    metrics_dir = tmp_path / f"metrics-{port}"
    metrics_dir.mkdir()
    log_path = tmp_path / f"gunicorn-{port}.log"

    child_env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RENTGATE_") and name != "PROMETHEUS_MULTIPROC_DIR"
    }
    child_env.update(
        {
            "RENTGATE_ENV": "test",
            "RENTGATE_DATABASE_URL": url,
            "RENTGATE_BIND": f"127.0.0.1:{port}",
            "RENTGATE_WORKERS": str(workers),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    child_env.update(env or {})
    log_file = log_path.open("wb")
    # The working folder is tmp_path, so no developer's .env file is read.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(GUNICORN_CONF),
            "rentgate.wsgi:app",
        ],
        cwd=tmp_path,
        env=child_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()

    def stop(timeout: float = 40.0) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return int(process.returncode)

    server = LiveServer(
        base_url=f"http://127.0.0.1:{port}",
        api_key=key,
        admin_key=admin_key,
        database_url=url,
        log_path=log_path,
        metrics_dir=metrics_dir,
        process=process,
        stop=stop,
    )
    try:
        _wait_until_healthy(server, startup_timeout)
    except BaseException:
        stop()
        raise
    return server


def _wait_until_healthy(server: LiveServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {server.process.returncode} before serving; "
                f"its log:\n{server.logs()[-4000:]}"
            )
        try:
            response = requests.get(f"{server.base_url}/healthz", timeout=5)
            if response.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"gunicorn did not serve /healthz within {timeout}s; its log:\n"
        f"{server.logs()[-4000:]}"
    )
