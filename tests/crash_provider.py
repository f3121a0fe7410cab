"""Test-only hooks that SIGKILL a gateway worker at one phase of an order.

The phase to crash at is read from the file named by RENTGATE_TEST_CRASH_FILE.
Each crash is one-shot: the file is deleted just before the kill, so the
restarted worker and the reconcile job run normally.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from rentgate import fastpath
from rentgate.providers.base import Deadline, ProviderRequest, ProviderResult
from rentgate.providers.local import LocalProvider

PHASES = ("before_provider", "during_provider", "before_settle_commit")


def crash_if_armed(phase: str) -> None:
    """SIGKILL this process if the crash file names ``phase``."""
    path = os.environ.get("RENTGATE_TEST_CRASH_FILE")
    if not path:
        return
    try:
        armed = Path(path).read_text().strip()
    except FileNotFoundError:
        return
    if armed != phase:
        return
    os.unlink(path)
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingLocalProvider(LocalProvider):
    """The local provider, killed before it allocates or after it allocated."""

    def submit(self, request: ProviderRequest, deadline: Deadline) -> ProviderResult:
        crash_if_armed("before_provider")
        result = super().submit(request, deadline)
        crash_if_armed("during_provider")
        return result


def install_settle_crash() -> None:
    """Kill the worker before the settlement commits.

    The transaction path is killed once the charge is inserted and before the
    COMMIT. PostgreSQL's one-statement path, whose activation and charge
    commit together, is killed just before that statement is sent.
    """
    fetch_one = fastpath._fetch_one

    def crash_before_activation(connection: Any, sql: str, params: Any) -> Any:
        if sql is fastpath.ACTIVATE:
            crash_if_armed("before_settle_commit")
        return fetch_one(connection, sql, params)

    fastpath._fetch_one = crash_before_activation

    @event.listens_for(Engine, "after_cursor_execute")
    def crash_before_commit(
        _connection: Any,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        if statement.startswith("INSERT INTO ledger_entries"):
            crash_if_armed("before_settle_commit")
