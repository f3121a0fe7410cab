"""Rate limits per API key, counted by the ``limits`` library.

One limit (``RENTGATE_RATE_LIMIT``, such as ``50/second;2000/minute``) counts
every request of a key across all routes, in fixed windows. The counters live
in Redis when ``RENTGATE_REDIS_URL`` is set, so all workers and instances share
them; otherwise each process counts alone and the limit is multiplied by the
number of processes. Health, metrics and docs routes are not limited.

Requests are counted by the SHA-256 of their Bearer token, so a key never
reaches Redis in plain text. Requests without a token, or with one that this
process has not authenticated, are counted by client address as well. A
breach raises ``RateLimited``, which ``rentgate.errors`` renders as a problem
body with ``Retry-After``.

A Redis outage must not take the gateway down: counting falls back to this
process's memory, with one warning, and Redis is tried again after 1, 2, 4 ...
up to 64 seconds. Each Redis call gives up after REDIS_TIMEOUT_SECONDS.

One before-request hook calls ``limits`` directly. Flask-Limiter, which wraps
the same library, spent about as much CPU again as the count itself on every
request (py-spy of a gunicorn worker under load).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time

from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from rentgate.auth import verified_keys
from rentgate.config import Settings
from rentgate.errors import RentgateError

log = logging.getLogger(__name__)

EXTENSION_KEY = "rentgate_limiter"
UNLIMITED_BLUEPRINTS = {"health", "metrics", "docs"}
KEY_PREFIX = "rentgate"
MAX_RETRY_BACKOFF_SECONDS = 64
# A Redis that accepts connections but sends no reply delays a request at most
# this long per attempt, far below any worker timeout.
REDIS_TIMEOUT_SECONDS = 0.25


class RateLimited(RentgateError):
    status, title, slug = 429, "Too many requests", "rate-limited"


class ProcessCounters(Storage):
    """Fixed-window counters in this process's memory, expired when next used.

    ``limits``' own MemoryStorage expires keys from a timer thread, and it
    starts a new one whenever the last has finished, which under gunicorn
    meant a thread start on most requests (about 4% of a worker's time in a
    py-spy profile). Here an expired counter restarts when its key is next
    counted, and every SWEEP_EVERY counts drop the keys of quiet buckets.
    """

    STORAGE_SCHEME = None
    SWEEP_EVERY = 10_000

    def __init__(self) -> None:
        super().__init__()
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._since_sweep = 0

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            count, expires = self._counts.get(key, (0, 0.0))
            if expires <= now:
                count, expires = 0, now + expiry
            count += amount
            self._counts[key] = (count, expires)
            self._since_sweep += 1
            if self._since_sweep >= self.SWEEP_EVERY:
                self._sweep(now)
        return count

    def get(self, key: str) -> int:
        count, expires = self._counts.get(key, (0, 0.0))
        return count if expires > time.time() else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        _, expires = self._counts.get(key, (0, now))
        return max(expires, now)

    def check(self) -> bool:
        return True

    def reset(self) -> int:
        with self._lock:
            cleared = len(self._counts)
            self._counts.clear()
        return cleared

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        expired = [key for key, (_, expires) in self._counts.items() if expires <= now]
        for key in expired:
            del self._counts[key]


def rate_limit_buckets() -> list[str]:
    """Return the buckets the current request counts in.

    A request with a Bearer token counts in the bucket of the token's SHA-256.
    One whose token this process has not authenticated counts in its client
    address's bucket too, so a client cannot escape the limit by sending a
    new made-up key each time.
    """
    address = f"addr:{request.remote_addr or 'unknown'}"
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return [address]
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    if digest in verified_keys:
        return [f"key:{digest[:32]}"]
    return [f"key:{digest[:32]}", address]


class RequestLimiter:
    """Counts requests per bucket against the configured limits."""

    def __init__(self, limit: str, redis_url: str | None) -> None:
        # Shortest window first, so a burst is reported against its own limit.
        self.items: list[RateLimitItem] = sorted(parse_many(limit))
        self.memory = FixedWindowRateLimiter(ProcessCounters())
        self.redis = None
        if redis_url:
            storage = storage_from_string(
                redis_url,
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self.redis = FixedWindowRateLimiter(storage)
        self._lock = threading.Lock()
        self._redis_down = False
        self._failures = 0
        self._next_try = 0.0

    def breached(self, bucket: str) -> tuple[RateLimitItem, int] | None:
        """Count one request of ``bucket``; return the breached limit and the
        seconds until its window resets, or None within every limit.
        """
        counter = self._counter()
        try:
            return self._count(counter, bucket)
        except StorageError as exc:
            if counter is self.memory:
                raise
            self._mark_down(exc)
            return self._count(self.memory, bucket)

    def _count(
        self, counter: FixedWindowRateLimiter, bucket: str
    ) -> tuple[RateLimitItem, int] | None:
        for item in self.items:
            if not counter.hit(item, KEY_PREFIX, bucket):
                reset_time = counter.get_window_stats(item, KEY_PREFIX, bucket)[0]
                return item, max(1, math.ceil(reset_time - time.time()))
        return None

    def _counter(self) -> FixedWindowRateLimiter:
        if self.redis is None:
            return self.memory
        if not self._redis_down:
            return self.redis
        with self._lock:
            if time.monotonic() < self._next_try:
                return self.memory
            # Other requests count in memory while this one checks Redis.
            self._next_try = math.inf
        back = False
        try:
            back = self.redis.storage.check()
        finally:
            with self._lock:
                if back:
                    self._redis_down = False
                    self._failures = 0
                else:
                    # The wait starts after the check, which may have taken up
                    # to REDIS_TIMEOUT_SECONDS.
                    self._next_try = time.monotonic() + self._backoff()
        if not back:
            return self.memory
        log.info("rate limit counters are back in Redis")
        return self.redis

    def _mark_down(self, exc: StorageError) -> None:
        with self._lock:
            if not self._redis_down:
                log.warning(
                    "Redis failed, so rate limits count in this process until "
                    "it is back: %s",
                    exc,
                )
            self._redis_down = True
            self._next_try = time.monotonic() + self._backoff()

    def _backoff(self) -> float:
        self._failures += 1
        return float(min(2 ** (self._failures - 1), MAX_RETRY_BACKOFF_SECONDS))


def _check_limit() -> None:
    if request.blueprint in UNLIMITED_BLUEPRINTS or request.endpoint == "static":
        return
    limiter: RequestLimiter = current_app.extensions[EXTENSION_KEY]
    for bucket in rate_limit_buckets():
        breach = limiter.breached(bucket)
        if breach is not None:
            break
    else:
        return
    item, retry_after = breach
    counted = "API key" if bucket.startswith("key:") else "client address"
    raise RateLimited(
        f"Rate limit of {item} per {counted} exceeded; retry after {retry_after} "
        "seconds.",
        retry_after=retry_after,
    )


def init_app(app: Flask, settings: Settings) -> RequestLimiter:
    """Count every request before its view runs, in Redis or in memory."""
    limiter = RequestLimiter(settings.rate_limit, settings.redis_url)
    app.extensions[EXTENSION_KEY] = limiter
    app.before_request(_check_limit)
    return limiter
