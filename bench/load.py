"""Run wrk with ``order.lua`` and parse the JSON line its ``done`` hook prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "order.lua"


@dataclass(frozen=True)
class LoadResult:
    """Measurements of one wrk run, latencies in milliseconds."""

    connections: int
    seconds: float
    requests: int
    errors: int
    non2xx: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require_wrk() -> str:
    """Return the path of wrk, or raise with the command that installs it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed; run `make bench-deps` (as root) first.")
    return path


def run_wrk(
    url: str, *, connections: int, seconds: int, api_key: str = ""
) -> LoadResult:
    """Load ``url`` with ``connections`` connections for ``seconds`` seconds.

    ``errors`` adds wrk's socket errors (connect, read, write, timeout); a
    request is a timeout when it takes over 2 s, wrk's default.
    """
    threads = min(2, connections)
    argv = [require_wrk(), "-t", str(threads), "-c", str(connections)]
    argv += ["-d", f"{seconds}s", "-s", str(LUA_SCRIPT), url]
    env = dict(os.environ, BENCH_API_KEY=api_key)
    finished = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 60
    )
    if finished.returncode != 0:
        raise RuntimeError(f"wrk failed on {url}:\n{finished.stderr}")
    for line in finished.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            break
    else:
        raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{finished.stdout}")

    return LoadResult(
        connections=connections,
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        non2xx=data["non2xx"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
