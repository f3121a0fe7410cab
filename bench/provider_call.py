"""Measure the CPU time of one ``HttpProvider.submit`` against a local upstream.

Run it from the repository root with the project's virtualenv::

    .venv/bin/python bench/provider_call.py
    .venv/bin/python bench/provider_call.py --calls 2000 --rounds 3 --profile

It starts ``upstream_stub.py`` under gunicorn (one gthread worker, keep-alive
on) on a free 127.0.0.1 port, so the upstream's CPU time is not counted. After
a warm-up it times ``--rounds`` rounds of ``--calls`` sequential submits. CPU
time comes from ``time.process_time``, which covers every thread of this
process, the provider's watchdog thread included. The script prints CPU and
wall microseconds per submit for each round and their median.
``--profile`` then runs one more round under cProfile, timed by
``time.process_time`` so that waiting for the upstream does not count, and
prints the functions with the highest own CPU time. The profiler's own
overhead inflates those times, so read them as shares, not as costs.

Logging stays unconfigured, so the provider's log line is dropped at the
WARNING level without being formatted. This is a benchmark, not a test:
nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from servers import STUB_WORKERS, clean_env, start_gunicorn

from rentgate.config import ProviderSettings, Settings
from rentgate.providers.base import Deadline, ProviderRequest
from rentgate.providers.http import HttpProvider

REQUEST = ProviderRequest(
    lease_id="00000000-0000-4000-8000-00000000b0b0",
    tenant_id=1,
    offering="compute",
    kind="compute",
    action="rent",
    quantity=1,
    hours=1,
    pool=None,
    order={"resource_type": "compute", "quantity": 1},
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=5000, help="submits per round (default 5000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed rounds (default 5)"
    )
    parser.add_argument(
        "--warmup", type=int, default=500, help="untimed submits first (default 500)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one round with cProfile and print the top functions",
    )
    return parser.parse_args()


def make_provider(url: str) -> HttpProvider:
    """Build an http provider for ``url`` from RENTGATE_* variables and defaults."""
    settings = Settings(_env_file=None, env="test", database_url="sqlite://")  # type: ignore[call-arg]
    config = ProviderSettings(kind="http", base_url=url)
    return HttpProvider("bench-stub", config, settings)


def submit_many(provider: HttpProvider, calls: int) -> None:
    seconds = provider.settings.provider_deadline
    for _ in range(calls):
        provider.submit(REQUEST, Deadline(seconds))


def time_round(provider: HttpProvider, calls: int) -> tuple[float, float]:
    """Return the CPU and wall microseconds per submit over ``calls`` submits."""
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    submit_many(provider, calls)
    cpu = time.process_time() - cpu_start
    wall = time.perf_counter() - wall_start
    return cpu / calls * 1e6, wall / calls * 1e6


def run(provider: HttpProvider, args: argparse.Namespace) -> None:
    submit_many(provider, args.warmup)

    cpu_rounds, wall_rounds = [], []
    for number in range(1, args.rounds + 1):
        cpu, wall = time_round(provider, args.calls)
        cpu_rounds.append(cpu)
        wall_rounds.append(wall)
        print(f"round {number}: cpu {cpu:7.1f} us/submit, wall {wall:7.1f} us/submit")
    print(
        f"median of {args.rounds} x {args.calls} submits: "
        f"cpu {statistics.median(cpu_rounds):.1f} us, "
        f"wall {statistics.median(wall_rounds):.1f} us"
    )

    if args.profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.runcall(submit_many, provider, args.calls)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="provider-call-") as folder:
        stub = start_gunicorn(
            "upstream stub",
            "upstream_stub:app",
            env=clean_env(),
            log_path=Path(folder) / "stub.log",
            worker_args=STUB_WORKERS,
            probe="/health",
        )
        try:
            provider = make_provider(stub.url)
            try:
                run(provider, args)
            finally:
                provider.close()
        finally:
            stub.stop()


if __name__ == "__main__":
    main()
