"""A provider that forwards orders as JSON to ``<base_url>/<action>``.

Every call runs under one wall-clock deadline. Connect and read timeouts bound
each socket operation, and a watchdog shuts the sockets of the call down when
the deadline passes, so an upstream that trickles bytes cannot hold a worker.
``requests`` exceptions become provider errors in ``_send`` and nowhere else.
"""

from __future__ import annotations

import contextvars
import json
import logging
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
    stop_after_delay,
    wait_random_exponential,
)
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
def _watchdog(deadline: Deadline) -> Iterator[_Watch]:
    watch = _Watch()
    token = _current_watch.set(watch)
    timer = threading.Timer(deadline.remaining(), watch.fire)
    timer.daemon = True
    timer.start()
    try:
        yield watch
    finally:
        watch.finish()
        timer.cancel()
        _current_watch.reset(token)


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
        jitter = wait_random_exponential(multiplier=0.05, max=1.0)

        def wait_within_deadline(retry_state: RetryCallState) -> float:
            # A backoff that would outlast the deadline is cut short, so the
            # next attempt finds the deadline passed and fails at once.
            return min(jitter(retry_state), deadline.remaining())

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.provider_retry_attempts)
            | stop_after_delay(max(deadline.remaining() - 0.05, 0)),
            wait=wait_within_deadline,
            retry=retry_if_exception(self._may_retry),
            reraise=True,
        )
        return retrying(self._send, method, path, deadline, payload, lease_id)

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
        deadline: Deadline,
        payload: dict[str, Any] | None,
        lease_id: str | None,
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
        headers = {"Accept": "application/json"}
        if lease_id is not None:
            headers["Idempotency-Key"] = lease_id
        started = time.monotonic()
        status: int | str = "error"
        response: requests.Response | None = None
        try:
            with _watchdog(deadline) as watch:
                try:
                    response = self.session.request(
                        method,
                        url,
                        json=payload,
                        headers=headers,
                        timeout=timeout,
                        allow_redirects=False,
                        stream=True,
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
