"""Provider classes for tests, configured by kind ``tests.fake_providers:Name``.

They extend the embedded local provider, so orders still allocate real rows,
and add hooks that tests steer through class attributes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

from rentgate.providers.base import (
    Deadline,
    ProviderError,
    ProviderRequest,
    ProviderResult,
    ProviderStatus,
)
from rentgate.providers.local import LocalProvider


class GatedProvider(LocalProvider):
    """Blocks in ``submit`` until a test sets ``proceed``."""

    entered: ClassVar[threading.Event] = threading.Event()
    proceed: ClassVar[threading.Event] = threading.Event()

    @classmethod
    def reset(cls) -> None:
        cls.entered = threading.Event()
        cls.proceed = threading.Event()

    def submit(self, request: ProviderRequest, deadline: Deadline) -> ProviderResult:
        type(self).entered.set()
        if not type(self).proceed.wait(timeout=15):
            raise RuntimeError("test never released the gated provider")
        return super().submit(request, deadline)


class ScriptedProvider(LocalProvider):
    """Raises ``submit_error()`` from submit if set; counts and slows calls."""

    submit_error: ClassVar[Callable[[], ProviderError] | None] = None
    status_override: ClassVar[ProviderStatus | None] = None
    delay: ClassVar[float] = 0.0
    calls: ClassVar[Counter[tuple[str, str]]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.submit_error = None
        cls.status_override = None
        cls.delay = 0.0
        cls.calls = Counter()

    def _count(self, method: str, lease_id: str) -> None:
        with type(self).lock:
            type(self).calls[(method, lease_id)] += 1
        if type(self).delay:
            time.sleep(type(self).delay)

    def submit(self, request: ProviderRequest, deadline: Deadline) -> ProviderResult:
        self._count("submit", request.lease_id)
        make_error = type(self).submit_error
        if make_error is not None:
            raise make_error()
        return super().submit(request, deadline)

    def status(self, lease_id: str, deadline: Deadline) -> ProviderStatus:
        self._count("status", lease_id)
        if type(self).status_override is not None:
            return type(self).status_override
        return super().status(lease_id, deadline)
