"""Start and stop the benchmark's gunicorn servers and prepare their databases.

Every server binds to 127.0.0.1 on a free port, runs in its own process group
and is stopped by its process id when the benchmark ends or fails.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"
# Orders in one run stay far below both, so no order gets 409 or 402.
BENCH_POOL_CAPACITY = 1_000_000_000
BENCH_CREDIT_LIMIT_MINOR = 10**15


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment without RENTGATE_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENTGATE_")}
    env.update(extra)
    return env


@dataclass
class Server:
    """A gunicorn process serving one app under test."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        """Stop gunicorn with SIGTERM, then SIGKILL its process group after 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()


def start_gunicorn(
    name: str,
    app: str,
    *,
    env: dict[str, str],
    log_path: Path,
    worker_args: list[str],
    probe: str = "/",
) -> Server:
    """Start gunicorn for ``app`` and wait until it responds to ``GET probe``."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}"]
    argv += worker_args + ["--log-level", "warning", "--chdir", str(BENCH_DIR), app]
    log = log_path.open("wb")
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=BENCH_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(name, port, process, log)
    try:
        wait_until_serving(server, probe)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_serving(server: Server, probe: str, timeout: float = 30.0) -> None:
    """Poll ``GET probe`` until a response arrives, or raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with code {server.process.returncode} at "
                f"start; read {server.log.name}."
            )
        try:
            connection = http.client.HTTPConnection(HOST, server.port, timeout=2)
            connection.request("GET", probe)
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(
        f"{server.name} did not respond within {timeout}s; read {server.log.name}."
    )


SYNC_WORKERS = ["--workers", "2", "--worker-class", "sync"]
# One gthread worker keeps connections alive, unlike sync workers.
STUB_WORKERS = [
    "--workers",
    "1",
    "--worker-class",
    "gthread",
    "--threads",
    "16",
    "--keep-alive",
    "60",
]


@contextmanager
def postgres_database(admin_url: str):  # noqa: ANN201 - a generator context
    """Create a fresh PostgreSQL database, yield its URL, drop it afterwards."""
    base = make_url(admin_url)
    name = f"rentgate_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def prepare_rentgate_db(env: dict[str, str], log_path: Path) -> str:
    """Migrate and seed the database in ``env``, enlarge the compute pool and the
    demo tenant's credit, and return the demo tenant's API key.
    """
    rentgate = str(Path(sys.executable).parent / "rentgate")
    with log_path.open("ab") as log:
        subprocess.run(
            [rentgate, "migrate"], env=env, cwd=BENCH_DIR, stdout=log, check=True
        )
    seeded = subprocess.run(
        [rentgate, "seed-demo"],
        env=env,
        cwd=BENCH_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    keys = [w for w in seeded.stdout.split() if w.startswith("rg_")]
    if not keys:
        raise RuntimeError(f"seed-demo printed no API key:\n{seeded.stdout}")

    engine = create_engine(env["RENTGATE_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE capacity_pools SET capacity = :n WHERE offering = 'compute'"),
            {"n": BENCH_POOL_CAPACITY},
        )
        connection.execute(
            text("UPDATE tenants SET credit_limit_minor = :n WHERE name = 'demo'"),
            {"n": BENCH_CREDIT_LIMIT_MINOR},
        )
    engine.dispose()
    return keys[0]


def booking_counts(database_url: str) -> dict[str, int]:
    """Count leases by state and charge entries, to check that every 201 booked."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT state, COUNT(*) FROM leases GROUP BY state")
        ).all()
        charges = connection.execute(
            text("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'charge'")
        ).scalar_one()
    engine.dispose()
    counts = {state: int(count) for state, count in rows}
    counts["charges"] = int(charges)
    return counts


def server_version(database_url: str | URL) -> str:
    """Return the database server's version string."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version()")).scalar_one()
    engine.dispose()
    return str(version).split(" on ")[0]
