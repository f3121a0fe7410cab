"""Profile compute orders in-process and split their time by step of the flow.

Settings come from the RENTGATE_* environment, as for the server, and the
database must be migrated and seeded. The script first times each step of
``--orders`` orders with wrappers around the functions of the order flow,
then profiles as many orders again with pyinstrument, and writes both to
``--out`` (JSON) and ``--tree`` (pyinstrument's text tree).

The Flask test client calls the app directly, so gunicorn's HTTP parsing and
the TCP round trip are not in these figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from sqlalchemy import event

from rentgate import create_app

BODY = {"resource_type": "compute", "quantity": 1}

# (step, module, function). Steps nest: a step's own time excludes the steps
# it calls, so pricing is not counted again in the admission transaction.
STEPS = [
    ("auth (API key lookup)", "rentgate.auth", "authenticate"),
    ("auth (key hash, checked at admission)", "rentgate.api.orders", "pending_key"),
    ("body (Content-Type, JSON parse)", "rentgate.api.orders", "json_body"),
    ("validation (pydantic)", "rentgate.api.orders", "parse_order"),
    ("pricing (price query and quote)", "rentgate.ordering", "quote"),
    ("pricing (cached price, quote)", "rentgate.ordering", "quote_price"),
    ("admission statement", "rentgate.ordering", "_admit_in_one_statement"),
    ("admission transaction", "rentgate.ordering", "_admit_in_transaction"),
    ("provider call", "rentgate.ordering", "call_provider"),
    ("settle statement or transaction", "rentgate.ordering", "settle_success"),
    ("serialization: lease to dict", "rentgate.ordering", "outcome_for_lease"),
    ("serialization: JSON response", "rentgate.api.orders", "outcome_response"),
]
REST = "rest: Flask, werkzeug, request id, teardown"


class StepTimer:
    """Adds each wrapped step's own wall and CPU time, children excluded."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.children = [(0.0, 0.0)]

    def reset(self) -> None:
        self.wall.clear()
        self.cpu.clear()

    def wrap(self, step: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.children.append((0.0, 0.0))
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                wall = time.perf_counter() - wall_start
                cpu = time.process_time() - cpu_start
                child_wall, child_cpu = self.children.pop()
                self.wall[step] += wall - child_wall
                self.cpu[step] += cpu - child_cpu
                parent_wall, parent_cpu = self.children[-1]
                self.children[-1] = (parent_wall + wall, parent_cpu + cpu)

        return timed


def install_step_timers(timer: StepTimer) -> list[str]:
    """Wrap every step that exists in this checkout; return the missing ones."""
    missing = []
    for step, module_name, function_name in STEPS:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name, None)
        if function is None:
            missing.append(f"{module_name}.{function_name}")
            continue
        setattr(module, function_name, timer.wrap(step, function))
    return missing


class SqlCounter:
    """Counts and times one engine's SQL statements, commits, rollbacks and
    pool pre-pings, and counts its pool checkouts.

    On psycopg the BEGIN that opens a transaction is sent with the first
    statement, so statement time includes it. The statements that
    ``rentgate.fastpath`` sends straight to psycopg bypass SQLAlchemy's
    events, so they are counted apart, by wrapping its ``_fetch_one``.
    """

    def __init__(self, engine: Any) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self._started: list[float] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine.pool, "checkout", self._checkout)
        dialect = engine.dialect
        try:
            fastpath = importlib.import_module("rentgate.fastpath")
        except ModuleNotFoundError:  # a BENCH_REF from before the fast path
            fastpath = None
        if fastpath is not None:
            fastpath._fetch_one = self._timed("psycopg statement", fastpath._fetch_one)
        for kind, name in (
            ("commit", "do_commit"),
            ("rollback", "do_rollback"),
            ("pre-ping", "do_ping"),
        ):
            setattr(dialect, name, self._timed(kind, getattr(dialect, name)))

    def _timed(self, kind: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.counts[kind] += 1
                self.seconds[kind] += time.perf_counter() - started

        return timed

    def _before(self, *_args: Any) -> None:
        self.counts["statement"] += 1
        self._started.append(time.perf_counter())

    def _after(self, *_args: Any) -> None:
        self.seconds["statement"] += time.perf_counter() - self._started.pop()

    def _checkout(self, *_args: Any) -> None:
        self.counts["checkout"] += 1

    def per_order(self, orders: int) -> dict[str, dict[str, float]]:
        """Return the count and milliseconds of each kind, divided by ``orders``."""
        return {
            kind: {
                "count": count / orders,
                "ms": self.seconds.get(kind, 0.0) * 1000 / orders,
            }
            for kind, count in sorted(self.counts.items())
        }


def post_order(client: Any, api_key: str) -> None:
    """Send one compute order and fail loudly on anything but 201."""
    response = client.post(
        "/rent_resource",
        json=BODY,
        headers={"Authorization": f"Bearer {api_key}"},
    )
    if response.status_code != 201:
        raise SystemExit(
            f"order failed with {response.status_code}: {response.get_data(True)}"
        )


def time_steps(app: Any, api_key: str, orders: int) -> dict[str, Any]:
    """Time each step over ``orders`` orders; return means and the total's median."""
    timer = StepTimer()
    missing = install_step_timers(timer)
    counter = SqlCounter(app.extensions["rentgate"].engine)
    client = app.test_client()
    totals: list[float] = []
    cpu_totals: list[float] = []
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(orders):
        timer.reset()
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        post_order(client, api_key)
        totals.append(time.perf_counter() - wall_start)
        cpu_totals.append(time.process_time() - cpu_start)
        for step, _module, _function in STEPS:
            wall[step].append(timer.wall.get(step, 0.0))
            cpu[step].append(timer.cpu.get(step, 0.0))
        wall[REST].append(totals[-1] - sum(timer.wall.values()))
        cpu[REST].append(cpu_totals[-1] - sum(timer.cpu.values()))

    return {
        "orders": orders,
        "total_mean_ms": statistics.fmean(totals) * 1000,
        "total_median_ms": statistics.median(totals) * 1000,
        "cpu_mean_ms": statistics.fmean(cpu_totals) * 1000,
        "steps_mean_ms": {step: statistics.fmean(v) * 1000 for step, v in wall.items()},
        "steps_cpu_mean_ms": {
            step: statistics.fmean(v) * 1000 for step, v in cpu.items()
        },
        "database_per_order": counter.per_order(orders),
        "missing_steps": missing,
    }


def profile_tree(app: Any, api_key: str, orders: int) -> str:
    """Profile ``orders`` orders with pyinstrument and return its text tree."""
    client = app.test_client()
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(orders):
        post_order(client, api_key)
    profiler.stop()
    return profiler.output_text(unicode=True, color=False, show_all=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-key", required=True, help="Demo tenant's API key.")
    parser.add_argument("--orders", type=int, default=300, help="Orders per pass.")
    parser.add_argument("--warmup", type=int, default=50, help="Orders before timing.")
    parser.add_argument("--out", type=Path, required=True, help="JSON output file.")
    parser.add_argument("--tree", type=Path, required=True, help="Profile text file.")
    args = parser.parse_args()

    app = create_app()
    client = app.test_client()
    for _ in range(args.warmup):
        post_order(client, args.api_key)
    # pyinstrument runs first, so its pass does not include the step wrappers.
    args.tree.write_text(profile_tree(app, args.api_key, args.orders))
    result = time_steps(app, args.api_key, args.orders)
    args.out.write_text(json.dumps(result, indent=2))
    app.extensions["rentgate"].close()


if __name__ == "__main__":
    sys.exit(main())
