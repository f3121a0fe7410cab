"""Render the Markdown report of one benchmark run."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import version

from load import LoadResult
from servers import server_version

STUB = "upstream stub"
FLOOR = "floor (bare WSGI)"
NAIVE = "naive forwarder (Flask)"
HTTP_PG = "rentgate http / PostgreSQL"
LOCAL_PG = "rentgate local / PostgreSQL"
MAX_ADDED_P50_MS = 2.0
MIN_LOCAL_FLOOR_RATIO = 0.25


@dataclass
class Measurement:
    """One app under test: its loaded, concurrency 1 and warm-up runs."""

    name: str
    loaded: LoadResult
    single: LoadResult
    warmup: LoadResult
    bookings: dict[str, int] = field(default_factory=dict)


def render_report(
    stamp: str,
    measurements: list[Measurement],
    profiles: dict[str, dict],
    settings: dict,
) -> str:
    """Return the whole report as Markdown."""
    by_name = {m.name: m for m in measurements}
    parts = [
        f"# rentgate benchmark, {stamp}\n",
        environment(settings),
        load_table(measurements, by_name, settings["connections"]),
        single_table(measurements, by_name),
        targets(by_name),
        bookings(measurements),
        *(profile_section(name, data) for name, data in profiles.items()),
    ]
    return "\n".join(parts)


def environment(settings: dict) -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(
                line.split(":", 1)[1].strip()
                for line in cpuinfo
                if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    lines = [
        f"- Code under test: {settings['source']}; "
        f"whole run {settings['wall_seconds']:.0f} s.",
        f"- {os.cpu_count()} cores ({cpu}), shared with other work; "
        f"{platform.system()} {platform.release()}. Load average (1, 5, 15 min) "
        f"{load(settings['load_before'])} at the start and "
        f"{load(settings['load_after'])} at the end.",
        f"- Python {sys.version.split()[0]}, gunicorn {version('gunicorn')}, "
        f"Flask {version('flask')}, SQLAlchemy {version('sqlalchemy')}, "
        f"psycopg {version('psycopg')}, {wrk.split(' [')[0] or 'wrk'}.",
        f"- {server_version(settings['postgres_url'])}; SQLite "
        f"{sqlite3.sqlite_version} in WAL mode.",
        f"- Load: {settings['connections']} connections for {settings['seconds']} s "
        f"after a {settings['warmup_seconds']} s warm-up, then 1 connection for "
        f"{settings['seconds']} s; every app on gunicorn `-w 2` sync workers, the "
        "stub on one gthread worker with 16 threads.",
    ]
    return "## Set-up\n\n" + "\n".join(lines) + "\n"


def load(averages: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.1f}" for value in averages)


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def load_table(
    measurements: list[Measurement], by_name: dict[str, Measurement], connections: int
) -> str:
    floor = by_name[FLOOR].loaded.rps if FLOOR in by_name else 0.0
    naive = by_name[NAIVE].loaded.rps if NAIVE in by_name else 0.0
    rows = [
        f"## Throughput at {connections} connections\n",
        "| app | req/s | p50 ms | p99 ms | errors | non-2xx | vs floor | vs naive |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in measurements:
        r = m.loaded
        rows.append(
            f"| {m.name} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.errors} | {r.non2xx} | {ratio(r.rps, floor)} | {ratio(r.rps, naive)} |"
        )
    return "\n".join(rows) + "\n"


def single_table(
    measurements: list[Measurement], by_name: dict[str, Measurement]
) -> str:
    stub = by_name[STUB].single.p50_ms if STUB in by_name else 0.0
    floor = by_name[FLOOR].single.p50_ms if FLOOR in by_name else 0.0
    rows = [
        "## Latency at concurrency 1\n",
        "| app | req/s | p50 ms | p99 ms | errors | non-2xx | p50 - stub p50 | "
        "p50 - floor p50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in measurements:
        r = m.single
        rows.append(
            f"| {m.name} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.errors} | {r.non2xx} | {r.p50_ms - stub:+.2f} | "
            f"{r.p50_ms - floor:+.2f} |"
        )
    return "\n".join(rows) + "\n"


def targets(by_name: dict[str, Measurement]) -> str:
    """Check the four targets; a missing app marks its target as not measured."""
    rows = [
        "## Targets\n",
        "| target | measured | result |",
        "| --- | --- | --- |",
    ]
    if HTTP_PG in by_name and NAIVE in by_name:
        got, want = by_name[HTTP_PG].loaded.rps, by_name[NAIVE].loaded.rps
        rows.append(
            f"| rentgate http / PostgreSQL req/s >= naive forwarder | "
            f"{got:.0f} vs {want:.0f} ({ratio(got, want)}) | {verdict(got >= want)} |"
        )
    if LOCAL_PG in by_name and FLOOR in by_name:
        got, floor = by_name[LOCAL_PG].loaded.rps, by_name[FLOOR].loaded.rps
        want = MIN_LOCAL_FLOOR_RATIO * floor
        rows.append(
            f"| rentgate local / PostgreSQL req/s >= {MIN_LOCAL_FLOOR_RATIO}x floor | "
            f"{got:.0f} vs {want:.0f} ({ratio(got, floor)} of floor) | "
            f"{verdict(got >= want)} |"
        )
    if HTTP_PG in by_name and STUB in by_name:
        added = by_name[HTTP_PG].single.p50_ms - by_name[STUB].single.p50_ms
        rows.append(
            f"| added p50 at concurrency 1 (rentgate http / PostgreSQL - stub) "
            f"<= {MAX_ADDED_P50_MS:g} ms | {added:.2f} ms | "
            f"{verdict(added <= MAX_ADDED_P50_MS)} |"
        )
    failures = {
        f"{m.name} {phase}": r.errors + r.non2xx
        for m in by_name.values()
        for phase, r in (("load", m.loaded), ("c=1", m.single), ("warm-up", m.warmup))
        if r.errors + r.non2xx
    }
    where = ", ".join(f"{count} in {run}" for run, count in failures.items())
    rows.append(
        f"| zero errors and zero non-2xx (every run, warm-ups included) | "
        f"{sum(failures.values())}{' (' + where + ')' if where else ''} | "
        f"{verdict(not failures)} |"
    )
    return "\n".join(rows) + "\n"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def bookings(measurements: list[Measurement]) -> str:
    rows = [
        "## Bookings after the load\n",
        "Every admitted order must end active with one charge, and none may stay "
        "pending or fail. Active leases may exceed the 2xx answers wrk counted: "
        "each wrk run stops with requests in flight, which the server still "
        "completes, and a request slower than 2 s counts as a wrk timeout.\n",
        "| app | 2xx counted by wrk | active | pending | failed | charges |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in measurements:
        if not m.bookings:
            continue
        answered = sum(r.requests - r.non2xx for r in (m.warmup, m.loaded, m.single))
        b = m.bookings
        rows.append(
            f"| {m.name} | {answered} | {b.get('active', 0)} | "
            f"{b.get('pending', 0)} | {b.get('failed', 0)} | {b.get('charges', 0)} |"
        )
    return "\n".join(rows) + "\n"


def profile_section(name: str, data: dict) -> str:
    total = data["total_mean_ms"]
    database = data["database_per_order"]
    calls = ", ".join(
        f"{v['count']:.1f} {kind}s" + (f" ({v['ms']:.2f} ms)" if v["ms"] else "")
        for kind, v in database.items()
    )
    rows = [
        f"## Where one order's time goes: {name}\n",
        f"In-process (Flask test client, no gunicorn or TCP), {data['orders']} "
        f"orders: mean {total:.2f} ms, median {data['total_median_ms']:.2f} ms per "
        f"order, of which {data['cpu_mean_ms']:.2f} ms CPU in this process. "
        f"Database calls per order: {calls}. "
        f"pyinstrument tree: `{data['tree_file']}` in the run's folder.\n",
        "| step | wall ms | share | CPU ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for step, ms in data["steps_mean_ms"].items():
        cpu = data["steps_cpu_mean_ms"][step]
        rows.append(f"| {step} | {ms:.3f} | {ms / total:.0%} | {cpu:.3f} |")
    if data.get("missing_steps"):
        rows.append(
            "\nNot timed, because this checkout has no such function: "
            + ", ".join(data["missing_steps"])
        )
    return "\n".join(rows) + "\n"
