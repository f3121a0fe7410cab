"""Upstream stub for the benchmark, which fulfils every order at once.

Serve it with gunicorn gthread workers so that rentgate's pooled connections
stay open between orders. ``POST /<action>`` returns a JSON object with a
``resource_id``, taken from the ``Idempotency-Key`` header when there is one.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

_counter = itertools.count(1)
_HEALTH = b'{"status": "ok"}'


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Return a resource id to ``POST /<action>`` and ok to ``GET /health``."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)

    if environ["REQUEST_METHOD"] == "GET":
        body = _HEALTH
    else:
        reference = (
            environ.get("HTTP_IDEMPOTENCY_KEY") or f"{os.getpid()}-{next(_counter)}"
        )
        body = json.dumps({"resource_id": f"stub-{reference}"}).encode()

    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
