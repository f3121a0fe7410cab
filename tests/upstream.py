"""A real provider server on 127.0.0.1 for integration tests.

It speaks the ``http`` provider protocol: ``POST /<action>`` creates one
resource per ``Idempotency-Key``, ``GET /leases/<id>`` reports it, ``POST
/release`` releases it and ``GET /health`` returns 200. ``fail_with`` makes the
next orders answer with a chosen status.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class UpstreamState:
    """What the stub provider has seen and created."""

    resources: dict[str, str] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = field(
        default_factory=list
    )
    fail_with: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes, so with Nagle's algorithm on the
    # body waits for the client's delayed ACK, about 40 ms a call (measured).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        state = self.server.state
        body = self._body()
        with state.lock:
            state.requests.append(("POST", self.path, body, dict(self.headers)))
            if self.path == "/release":
                state.released.add(body["lease_id"])
                self._send(200, {"released": True})
                return
            if state.fail_with is not None:
                self._send(state.fail_with, {"error": "configured failure"})
                return
            key = self.headers.get("Idempotency-Key", "")
            resource_id = state.resources.setdefault(
                key, f"up-{len(state.resources) + 1}"
            )
        self._send(201, {"resource_id": resource_id, "region": "local-1"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        state = self.server.state
        with state.lock:
            state.requests.append(("GET", self.path, None, dict(self.headers)))
        if self.path == "/health":
            self._send(200, {"status": "ok"})
            return
        lease_id = self.path.rsplit("/", 1)[-1]
        resource_id = state.resources.get(lease_id)
        if resource_id is None:
            self._send(404, {"error": "unknown lease"})
            return
        self._send(200, {"state": "active", "resource_id": resource_id})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: UpstreamState


@contextmanager
def run_upstream() -> Iterator[tuple[str, UpstreamState]]:
    """Serve the stub provider on a free 127.0.0.1 port; yield its URL and state."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = UpstreamState()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.state
    finally:
        server.shutdown()
        server.server_close()
