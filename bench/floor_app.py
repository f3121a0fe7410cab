"""The floor of the benchmark, a bare WSGI function with a fixed JSON response.

It reads the order body and returns 201 without parsing, checking or booking
anything, so its figures are mostly gunicorn's own cost per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

_BODY = b'{"status": "success", "resource_id": "floor-1"}'
_HEADERS = [
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(_BODY))),
]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Read the body and return the fixed response."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("201 Created", _HEADERS)
    return [_BODY]
