"""A provider that forwards orders as JSON to ``<base_url>/<action>``.

Every call runs under one wall-clock deadline. Connect and read timeouts bound
each socket operation, and one watchdog thread per process shuts the sockets of
a call down when its deadline passes, so an upstream that trickles bytes cannot
hold a worker.
``requests`` exceptions become provider errors in ``_send`` and nowhere else.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from rentgate.config import ProviderSettings, Settings
from rentgate.providers.base import (
    Deadline,
    Provider,
    ProviderBadResponse,
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    ProviderStatus,
    ProviderTimeout,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)


class _Watch:
    """The connections of one call, shut down if its deadline passes."""

    __slots__ = ("lock", "connections", "finished", "fired")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: list[Any] = []
        self.finished = False
        self.fired = False

    def add(self, connection: Any) -> None:
        with self.lock:
            self.connections.append(connection)

    def fire(self) -> None:
        with self.lock:
            if self.finished:
                return
            self.fired = True
            for connection in self.connections:
                sock = getattr(connection, "sock", None)
                if sock is None:
                    continue
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def finish(self) -> None:
        with self.lock:
            self.finished = True


class _Watchdog:
    """One thread per process that fires each watch whose deadline passes.

    The thread starts with the first watch of each process, so a forked child
    such as a gunicorn worker starts its own. Pending watches sit in a heap
    ordered by expiry. A finished watch stays in the heap until it reaches the
    top, where it is dropped without firing.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also runs in a forked child, where the parent's thread is gone and
        # the lock may have been copied while another thread held it.
        self._condition = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watch]] = []
        self._sequence = itertools.count()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, expires: float) -> _Watch:
        """Register a watch that fires at ``expires`` unless it is finished first.

        ``expires`` is a ``time.monotonic()`` value.
        """
        watch = _Watch()
        with self._condition:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="rentgate-http-watchdog", daemon=True
                )
                thread.start()
                self._thread = thread
            heap = self._heap
            while heap and heap[0][2].finished:
                heapq.heappop(heap)
            heapq.heappush(heap, (expires, next(self._sequence), watch))
            # Waking the thread costs a context switch, so only a watch due
            # before the thread's next wake-up does it.
            if expires < self._wake_at:
                self._wake_at = expires
                self._condition.notify()
        return watch

    def _run(self) -> None:
        while True:
            with self._condition:
                due = self._pop_due()
                while not due:
                    if self._heap:
                        self._wake_at = self._heap[0][0]
                        self._condition.wait(self._wake_at - time.monotonic())
                    else:
                        self._wake_at = math.inf
                        self._condition.wait()
                    due = self._pop_due()
            # Shutting sockets down happens outside the lock, so calls that
            # start meanwhile do not wait for it.
            for watch in due:
                watch.fire()

    def _pop_due(self) -> list[_Watch]:
        heap = self._heap
        now = time.monotonic()
        due = []
        while heap and (heap[0][2].finished or heap[0][0] <= now):
            watch = heapq.heappop(heap)[2]
            if not watch.finished:
                due.append(watch)
        return due


_watchdog = _Watchdog()
os.register_at_fork(after_in_child=_watchdog._reset)


_current_watch: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar(
    "rentgate_http_watch", default=None
)


class _WatchedPoolMixin:
    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        watch = _current_watch.get()
        if watch is not None:
            watch.add(connection)
        return connection


class _WatchedHTTPPool(_WatchedPoolMixin, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_WatchedPoolMixin, HTTPSConnectionPool):
    pass


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


@contextmanager
def _watched(deadline: Deadline) -> Iterator[_Watch]:
    watch = _watchdog.watch(deadline.expires)
    token = _current_watch.set(watch)
    try:
        yield watch
    finally:
        watch.finish()
        _current_watch.reset(token)


# No retry starts when less than this many seconds of the deadline are left.
_RETRY_MARGIN = 0.05
_BACKOFF = wait_random_exponential(multiplier=0.05, max=1.0)


class _StopNearDeadline(stop_base):
    """A stop condition that is true once too little of the deadline is left.

    Too little is ``_RETRY_MARGIN`` seconds or less. The deadline is the
    ``deadline`` keyword argument of the retried function.
    """

    def __call__(self, retry_state: RetryCallState) -> bool:
        deadline: Deadline = retry_state.kwargs["deadline"]
        return deadline.remaining() <= _RETRY_MARGIN


def _wait_within_deadline(retry_state: RetryCallState) -> float:
    # A backoff that would outlast the deadline is cut short, so the next
    # attempt finds the deadline passed and fails at once.
    deadline: Deadline = retry_state.kwargs["deadline"]
    return min(_BACKOFF(retry_state), deadline.remaining())


class SubmitAnswer(BaseModel):
    """The JSON a provider returns for a fulfilled order."""

    model_config = ConfigDict(extra="allow")

    resource_id: str = Field(min_length=1, max_length=200)


class StatusAnswer(BaseModel):
    """The JSON a provider returns for ``GET <base_url>/leases/<lease_id>``."""

    model_config = ConfigDict(extra="allow")

    state: str = Field(pattern="^(active|failed)$")
    resource_id: str | None = Field(default=None, max_length=200)


class HttpProvider(Provider):
    """Forwards orders to a remote provider over HTTP."""

    def __init__(self, name: str, config: ProviderSettings, settings: Settings) -> None:
        super().__init__(name, config, settings)
        if config.base_url is None:
            raise ValueError(
                f"RENTGATE_PROVIDERS: provider {name!r} of kind http needs a base_url"
            )
        self.base_url = str(config.base_url).rstrip("/")
        self.honours_reference = bool(config.options.get("honours_reference", False))
        self.session = requests.Session()
        # Proxies and .netrc from the environment must not redirect orders.
        self.session.trust_env = False
        adapter = _WatchedAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        headers = self.session.headers.copy()
        headers["Accept"] = "application/json"
        self._headers = dict(headers)
        # One Retrying serves every call and thread, because tenacity 9.2
        # keeps the state of a running call in a threading.local. Each call's
        # deadline reaches the stop and the wait as an argument of _send.
        self._retrying = Retrying(
            stop=stop_after_attempt(settings.provider_retry_attempts)
            | _StopNearDeadline(),
            wait=_wait_within_deadline,
            retry=retry_if_exception(self._may_retry),
            reraise=True,
        )

    def close(self) -> None:
        self.session.close()

    def submit(self, request: ProviderRequest, deadline: Deadline) -> ProviderResult:
        body = self._call(
            "POST",
            f"/{request.action}",
            deadline,
            payload=request.to_json(),
            lease_id=request.lease_id,
        )
        try:
            answer = SubmitAnswer.model_validate(body)
        except ValidationError as exc:
            raise ProviderBadResponse(
                f"Provider {self.name!r} returned no valid resource_id for "
                f"{request.action}: {exc.errors()[0]['msg']}."
            ) from exc
        details = {k: v for k, v in body.items() if k != "resource_id"}
        return ProviderResult(answer.resource_id, _small(details))

    def status(self, lease_id: str, deadline: Deadline) -> ProviderStatus:
        try:
            body = self._call("GET", f"/leases/{lease_id}", deadline, lease_id=lease_id)
        except ProviderRejected as exc:
            if exc.extra.get("upstream_status") == 404:
                return ProviderStatus("unknown", reason="provider has no such lease")
            raise
        try:
            answer = StatusAnswer.model_validate(body)
        except ValidationError as exc:
            raise ProviderBadResponse(
                f"Provider {self.name!r} sent an invalid lease status."
            ) from exc
        return ProviderStatus(answer.state, answer.resource_id)  # type: ignore[arg-type]

    def release(self, lease_id: str, resource_id: str, deadline: Deadline) -> None:
        self._call(
            "POST",
            "/release",
            deadline,
            payload={"lease_id": lease_id, "resource_id": resource_id},
            lease_id=lease_id,
        )

    def check(self, deadline: Deadline) -> None:
        self._call("GET", "/health", deadline, lease_id=None)

    def _call(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        payload: dict[str, Any] | None = None,
        lease_id: str | None,
    ) -> dict[str, Any]:
        return self._retrying(
            self._send, method, path, payload, lease_id, deadline=deadline
        )

    def _may_retry(self, exc: BaseException) -> bool:
        if not isinstance(exc, ProviderError):
            return False
        if isinstance(exc, ProviderUnavailable):
            return True
        return self.honours_reference and isinstance(
            exc, ProviderTimeout | ProviderBadResponse
        )

    def _send(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        lease_id: str | None,
        *,
        deadline: Deadline,
    ) -> dict[str, Any]:
        url = self.base_url + path
        remaining = deadline.remaining()
        if remaining <= 0:
            raise ProviderTimeout(
                f"{method} {url} not sent: the {deadline.seconds}s deadline passed."
            )
        timeout = (
            min(self.settings.provider_connect_timeout, remaining),
            min(self.settings.provider_read_timeout, remaining),
        )
        started = time.monotonic()
        status: int | str = "error"
        response: requests.Response | None = None
        try:
            with _watched(deadline) as watch:
                try:
                    prepared = self._prepare(method, url, payload, lease_id)
                    response = self.session.send(
                        prepared, timeout=timeout, allow_redirects=False, stream=True
                    )
                    status = response.status_code
                    raw = self._read_capped(response, url)
                    if watch.fired:
                        # A body without Content-Length ends at the shutdown, so
                        # a cut-off response may look complete.
                        raise self._deadline_passed(method, url)
                except requests.RequestException as exc:
                    raise self._translate(exc, method, url, watch.fired) from exc
                finally:
                    if response is not None:
                        response.close()
        finally:
            log.info(
                "provider call provider=%s method=%s url=%s lease_id=%s status=%s "
                "elapsed_ms=%.1f",
                self.name,
                method,
                url,
                lease_id,
                status,
                (time.monotonic() - started) * 1000,
            )
        return self._decode(status, raw, method, url)  # type: ignore[arg-type]

    def _prepare(
        self,
        method: str,
        url: str,
        payload: dict[str, Any] | None,
        lease_id: str | None,
    ) -> requests.PreparedRequest:
        """Build the request that ``Session.request`` would send, in less CPU time.

        ``Session.request`` merges the session's headers, cookies, auth, params,
        hooks and environment into every request. The session here has no auth,
        params or hooks and ignores the environment, so the headers merged once
        in ``__init__`` and the session's own cookie jar give the same request.
        """
        headers = self._headers
        if lease_id is not None:
            headers = {**headers, "Idempotency-Key": lease_id}
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method,
            url=url,
            headers=headers,
            json=payload,
            cookies=self.session.cookies,
        )
        return prepared

    def _read_capped(self, response: requests.Response, url: str) -> bytes:
        limit = self.settings.provider_max_response_bytes
        chunks = []
        size = 0
        for chunk in response.iter_content(chunk_size=16_384):
            size += len(chunk)
            if size > limit:
                raise ProviderBadResponse(
                    f"Provider {self.name!r} response from {url} exceeds {limit} bytes."
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _translate(
        self, exc: requests.RequestException, method: str, url: str, fired: bool
    ) -> ProviderError:
        where = f"{method} {url}"
        if fired:
            return self._deadline_passed(method, url)
        if isinstance(exc, requests.ConnectTimeout):
            return ProviderUnavailable(
                f"Provider {self.name!r} did not accept a connection for {where}.",
                retry_after=5,
            )
        if isinstance(exc, requests.ReadTimeout):
            return ProviderTimeout(f"Provider {self.name!r} timed out on {where}.")
        if isinstance(exc, requests.ConnectionError) and _never_sent(exc):
            return ProviderUnavailable(
                f"Provider {self.name!r} refused the connection for {where}.",
                retry_after=5,
            )
        if isinstance(exc, requests.ConnectionError):
            return ProviderOutcomeUnknown(
                f"Connection to provider {self.name!r} was lost during {where}; "
                "the outcome is unknown."
            )
        return ProviderBadResponse(f"Provider {self.name!r} failed on {where}: {exc}.")

    def _deadline_passed(self, method: str, url: str) -> ProviderTimeout:
        return ProviderTimeout(
            f"Provider {self.name!r} did not finish {method} {url} within the "
            f"{self.settings.provider_deadline}s deadline."
        )

    def _decode(self, status: int, raw: bytes, method: str, url: str) -> dict[str, Any]:
        where = f"{method} {url}"
        if 300 <= status < 400:
            raise ProviderBadResponse(
                f"Provider {self.name!r} returned redirect {status}, which is not "
                f"followed, for {where}."
            )
        if 400 <= status < 500:
            raise ProviderRejected(
                f"Provider {self.name!r} rejected {where} with status {status}.",
                extra={"upstream_status": status},
            )
        if status >= 500:
            raise ProviderBadResponse(
                f"Provider {self.name!r} failed {where} with status {status}."
            )
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ProviderBadResponse(
                f"Provider {self.name!r} returned a body that is not JSON for {where}."
            ) from exc
        if not isinstance(body, dict):
            raise ProviderBadResponse(
                f"Provider {self.name!r} returned JSON that is not an object for "
                f"{where}."
            )
        return body


def _never_sent(exc: requests.ConnectionError) -> bool:
    """Tell whether a connection error happened before the request left."""
    cause = exc.args[0] if exc.args else None
    reason = getattr(cause, "reason", cause)
    return isinstance(reason, NewConnectionError)


def _small(details: dict[str, Any]) -> dict[str, Any]:
    """Keep provider details only when they are small enough to store."""
    encoded = json.dumps(details, default=str)
    return details if len(encoded) <= 4096 else {}
