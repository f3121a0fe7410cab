"""Benchmark rentgate against an upstream stub, a bare WSGI floor and a naive
Flask forwarder, profile one order, and write a Markdown report.

Run it with ``make bench``; bench/README.md explains each figure. The report
goes to bench/results/<timestamp>.md and is copied to bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from load import LoadResult, require_wrk, run_wrk
from report import Measurement, render_report
from servers import (
    BENCH_DIR,
    STUB_WORKERS,
    SYNC_WORKERS,
    booking_counts,
    clean_env,
    postgres_database,
    prepare_rentgate_db,
    start_gunicorn,
)

POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP_SECONDS = int(os.environ.get("BENCH_WARMUP_SECONDS", "3"))
PROFILE_ORDERS = int(os.environ.get("BENCH_PROFILE_ORDERS", "200"))
# A git ref such as HEAD benchmarks that commit's src/ and migrations/ instead
# of the working tree, which other work in the checkout may have half changed.
SOURCE_REF = os.environ.get("BENCH_REF", "")
RESULTS_DIR = BENCH_DIR / "results"


@dataclass
class Run:
    """The output folder and the measurements of one benchmark run."""

    stamp: str
    folder: Path
    measurements: list[Measurement] = field(default_factory=list)
    profiles: dict[str, dict] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"


def measure(run: Run, name: str, url: str, api_key: str = "") -> Measurement:
    """Warm ``url`` up, load it at CONNECTIONS, then at concurrency 1."""
    print(f"[bench] {name}: warm-up {WARMUP_SECONDS}s", flush=True)
    warmup = run_wrk(
        url, connections=CONNECTIONS, seconds=WARMUP_SECONDS, api_key=api_key
    )
    print(f"[bench] {name}: {CONNECTIONS} connections for {SECONDS}s", flush=True)
    loaded = run_wrk(url, connections=CONNECTIONS, seconds=SECONDS, api_key=api_key)
    print(f"[bench] {name}: 1 connection for {SECONDS}s", flush=True)
    single = run_wrk(url, connections=1, seconds=SECONDS, api_key=api_key)
    result = Measurement(name, loaded, single, warmup)
    run.measurements.append(result)
    print(f"[bench] {name}: {summary(loaded)} | c=1 {summary(single)}", flush=True)
    return result


def summary(result: LoadResult) -> str:
    return (
        f"{result.rps:.0f} req/s p50 {result.p50_ms:.2f} ms "
        f"p99 {result.p99_ms:.2f} ms errors {result.errors} non-2xx {result.non2xx}"
    )


def rentgate_env(database_url: str, stub_url: str | None) -> dict[str, str]:
    """Return the environment of one rentgate variant; no stub means ``local``."""
    extra = {
        "RENTGATE_ENV": "production",
        "RENTGATE_DATABASE_URL": database_url,
        # One key sends every order, so the default per-key limit would return
        # 429. The limiter still counts each request.
        "RENTGATE_RATE_LIMIT": "1000000/second",
    }
    if stub_url is not None:
        extra["RENTGATE_PROVIDERS"] = json.dumps(
            {"local": {"kind": "local"}, "stub": {"kind": "http", "base_url": stub_url}}
        )
        extra["RENTGATE_OFFERING_PROVIDERS"] = json.dumps({"compute": "stub"})
    return clean_env(**extra)


@contextmanager
def database(kind: str, scratch: Path, name: str) -> Iterator[str]:
    """Yield a fresh database URL of ``kind``, removed afterwards."""
    if kind == "postgres":
        with postgres_database(POSTGRES_ADMIN_URL) as url:
            yield url
    else:
        yield f"sqlite:///{scratch / (name + '.db')}"


def bench_rentgate(
    run: Run, scratch: Path, provider: str, db_kind: str, stub_url: str
) -> None:
    """Measure one rentgate variant, check its bookings, and profile it."""
    name = (
        f"rentgate {provider} / {'PostgreSQL' if db_kind == 'postgres' else 'SQLite'}"
    )
    slug = f"rentgate-{provider}-{db_kind}"
    with database(db_kind, scratch, slug) as url:
        env = rentgate_env(url, stub_url if provider == "http" else None)
        api_key = prepare_rentgate_db(env, run.log(slug + "-setup"))
        server = start_gunicorn(
            name,
            "rentgate.wsgi:app",
            env=env,
            log_path=run.log(slug),
            worker_args=SYNC_WORKERS,
            probe="/healthz",
        )
        try:
            result = measure(run, name, f"{server.url}/rent_resource", api_key)
        finally:
            server.stop()
        result.bookings = booking_counts(url)
        run.profiles[name] = profile(run, slug, env, api_key)


def profile(run: Run, slug: str, env: dict[str, str], api_key: str) -> dict:
    """Run bench/profile_order.py for one variant and return its JSON result."""
    print(f"[bench] profiling {slug}", flush=True)
    out = run.folder / f"{slug}-profile.json"
    tree = run.folder / f"{slug}-profile.txt"
    argv = [sys.executable, str(BENCH_DIR / "profile_order.py")]
    argv += ["--api-key", api_key, "--orders", str(PROFILE_ORDERS)]
    argv += ["--out", str(out), "--tree", str(tree)]
    with run.log(slug + "-profile").open("wb") as log:
        subprocess.run(
            argv,
            env=env,
            cwd=BENCH_DIR,
            stdout=log,
            stderr=log,
            check=True,
            timeout=300,
        )
    result = json.loads(out.read_text())
    result["tree_file"] = tree.name
    return result


def bench_all(run: Run, scratch: Path) -> None:
    """Start the stub, then measure every app under test one after the other."""
    with ExitStack() as stack:
        stub = start_gunicorn(
            "upstream stub",
            "upstream_stub:app",
            env=clean_env(),
            log_path=run.log("stub"),
            worker_args=STUB_WORKERS,
            probe="/health",
        )
        stack.callback(stub.stop)
        measure(run, "upstream stub", f"{stub.url}/rent")

        floor = start_gunicorn(
            "floor",
            "floor_app:app",
            env=clean_env(),
            log_path=run.log("floor"),
            worker_args=SYNC_WORKERS,
        )
        try:
            measure(run, "floor (bare WSGI)", f"{floor.url}/rent_resource")
        finally:
            floor.stop()

        naive = start_gunicorn(
            "naive forwarder",
            "naive_forwarder:app",
            env=clean_env(BENCH_STUB_URL=stub.url),
            log_path=run.log("naive"),
            worker_args=SYNC_WORKERS,
        )
        try:
            measure(run, "naive forwarder (Flask)", f"{naive.url}/rent_resource")
        finally:
            naive.stop()

        for provider in ("http", "local"):
            for db_kind in ("postgres", "sqlite"):
                bench_rentgate(run, scratch, provider, db_kind, stub.url)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=BENCH_DIR, capture_output=True, text=True, check=True
    ).stdout.strip()


def describe_source() -> str:
    """Name the code under test: the BENCH_REF commit, or the working tree."""
    if SOURCE_REF:
        return f"{git('rev-parse', '--short', SOURCE_REF)} (BENCH_REF={SOURCE_REF})"
    dirty = git("status", "--porcelain", "--", "../src", "../migrations")
    commit = git("rev-parse", "--short", "HEAD")
    return f"{commit}{' plus uncommitted changes' if dirty else ''} (working tree)"


def use_source_ref(scratch: Path, commit: str) -> None:
    """Extract ``commit``'s src/ and migrations/ and put them first on PYTHONPATH.

    The editable install adds the checkout's src/ through a .pth file, which
    comes after PYTHONPATH, so every process started from here imports the
    extracted copy, migrations included.
    """
    target = scratch / "source"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", commit, "src", "migrations"],
        cwd=BENCH_DIR.parent,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    os.environ["PYTHONPATH"] = str(target / "src")


def main() -> None:
    require_wrk()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run = Run(stamp, RESULTS_DIR / stamp)
    run.folder.mkdir(parents=True)
    started = time.monotonic()
    load_before = os.getloadavg()
    source = describe_source()
    with tempfile.TemporaryDirectory(prefix="rentgate-bench-") as scratch:
        if SOURCE_REF:
            use_source_ref(Path(scratch), git("rev-parse", SOURCE_REF))
        bench_all(run, Path(scratch))
    settings = {
        "connections": CONNECTIONS,
        "seconds": SECONDS,
        "warmup_seconds": WARMUP_SECONDS,
        "profile_orders": PROFILE_ORDERS,
        "source": source,
        "wall_seconds": time.monotonic() - started,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "postgres_url": POSTGRES_ADMIN_URL,
    }
    text = render_report(run.stamp, run.measurements, run.profiles, settings)
    report = RESULTS_DIR / f"{stamp}.md"
    report.write_text(text)
    (BENCH_DIR / "RESULTS.md").write_text(text)
    print(f"[bench] report written to {report} and bench/RESULTS.md", flush=True)


if __name__ == "__main__":
    main()
