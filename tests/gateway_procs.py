"""Real gateway processes for tests: gunicorn masters and scratch databases.

``Gateway`` starts one gunicorn master on a free 127.0.0.1 port in its own
process group and kills that group on ``stop``. ``scratch_database`` creates a
migrated PostgreSQL database and drops it afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rentgate.migrations import upgrade

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_base_url() -> str:
    return os.environ.get("RENTGATE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create and migrate a PostgreSQL database; drop it when the block ends."""
    base = make_url(postgres_base_url())
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def gateway_env(database_url: str, **settings: Any) -> dict[str, str]:
    """Build the environment of a gateway process from RENTGATE_* settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RENTGATE_")
    }
    env["PYTHONPATH"] = str(ROOT)
    env["RENTGATE_ENV"] = "test"
    env["RENTGATE_DATABASE_URL"] = database_url
    env["RENTGATE_LOG_LEVEL"] = "WARNING"
    env["RENTGATE_ACCESS_LOG"] = "/dev/null"
    env["RENTGATE_RATE_LIMIT"] = "100000/second"
    for name, value in settings.items():
        env[f"RENTGATE_{name.upper()}"] = str(value)
    return env


class Gateway:
    """One gunicorn master serving the gateway on 127.0.0.1."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        workers: int = 2,
        app: str = "rentgate.wsgi:app",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            app,
        ]
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers = workers

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every worker is up and /healthz returns 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.process.returncode}; see "
                    f"{self.log_path}:\n{self.log_path.read_text()[-3000:]}"
                )
            if len(self.worker_pids()) == self.workers and self._healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"gateway on {self.url} not ready in {timeout}s")

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's worker processes."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        """Kill the master and its workers, which share its process group."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.log.close()


@contextmanager
def running_gateways(
    env: dict[str, str], log_dir: Path, *, count: int = 1, workers: int = 2, **kw: Any
) -> Iterator[list[Gateway]]:
    """Start ``count`` gunicorn masters on one database; kill them afterwards."""
    gateways: list[Gateway] = []
    try:
        for index in range(count):
            log_path = log_dir / f"gunicorn-{index}.log"
            gateways.append(Gateway(env, log_path, workers=workers, **kw))
        for gateway in gateways:
            gateway.wait_ready()
        yield gateways
    finally:
        for gateway in gateways:
            gateway.stop()


def seed(database_url: str) -> str:
    """Load the demo prices, pools and tenant; return the demo tenant's key."""
    from rentgate.config import Settings
    from rentgate.runtime import Runtime
    from rentgate.seed import seed_demo

    settings = Settings(_env_file=None, env="test", database_url=database_url)  # type: ignore[call-arg]
    runtime = Runtime.build(settings)
    try:
        with runtime.transaction() as session:
            key = seed_demo(session)
    finally:
        runtime.close()
    assert key is not None
    return key


def post_all_at_once(
    requests_to_send: list[tuple[str, dict[str, Any], dict[str, str]]],
    *,
    timeout: float = 60.0,
) -> list[requests.Response]:
    """POST every (url, body, headers) from its own thread, released together."""
    import threading

    barrier = threading.Barrier(len(requests_to_send))
    results: list[requests.Response | BaseException | None] = [None] * len(
        requests_to_send
    )

    def send(index: int) -> None:
        url, body, headers = requests_to_send[index]
        with requests.Session() as session:
            session.trust_env = False
            try:
                barrier.wait(timeout=timeout)
                results[index] = session.post(
                    url, json=body, headers=headers, timeout=timeout
                )
            except BaseException as exc:  # noqa: BLE001 - reported below
                results[index] = exc

    threads = [
        threading.Thread(target=send, args=(index,))
        for index in range(len(requests_to_send))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    failures = [r for r in results if not isinstance(r, requests.Response)]
    assert not failures, f"{len(failures)} requests failed, first: {failures[0]!r}"
    return results  # type: ignore[return-value]
