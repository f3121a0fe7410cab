"""Rate limits per API key with Flask-Limiter.

One limit (``RENTGATE_RATE_LIMIT``, such as ``50/second;2000/minute``) counts
every request of a key across all routes. The counters live in Redis when
``RENTGATE_REDIS_URL`` is set, so all workers and instances share them;
otherwise each process counts alone and the limit is multiplied by the number
of processes. Health, metrics and docs routes are not limited.

Requests are counted by the SHA-256 of their Bearer token, so a key never
reaches Redis in plain text; requests without a token are counted by client
address. A breach raises Flask-Limiter's 429, which ``rentgate.errors``
renders as a problem body with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import math
import time

from flask import Flask, current_app, request
from flask_limiter import Limiter

from rentgate.config import Settings

EXTENSION_KEY = "rentgate_limiter"
UNLIMITED_BLUEPRINTS = {"health", "metrics", "docs"}


def rate_limit_key() -> str:
    """Return the bucket of the current request: its API key hash or address."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        return f"key:{digest[:32]}"
    return f"addr:{request.remote_addr or 'unknown'}"


def _is_unlimited() -> bool:
    return request.blueprint in UNLIMITED_BLUEPRINTS or request.endpoint == "static"


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Attach a limiter that counts in Redis or, without it, in memory."""
    limiter = Limiter(
        rate_limit_key,
        app=app,
        application_limits=[settings.rate_limit],
        application_limits_exempt_when=_is_unlimited,
        storage_uri=settings.redis_url or "memory://",
        strategy="fixed-window",
        key_prefix="rentgate",
        headers_enabled=False,
        # A Redis outage must not take the gateway down: limits fall back to
        # per-process memory and Flask-Limiter logs a warning.
        swallow_errors=True,
        in_memory_fallback_enabled=bool(settings.redis_url),
    )
    app.extensions[EXTENSION_KEY] = limiter
    return limiter


def retry_after_seconds() -> int:
    """Return the seconds until the breached limit of this request resets."""
    limiter = current_app.extensions.get(EXTENSION_KEY)
    current = limiter.current_limit if limiter is not None else None
    if current is None:
        return 1
    reset_time = current.window[0]
    return max(1, math.ceil(reset_time - time.time()))
