"""A misbehaving provider on 127.0.0.1, written on raw sockets.

Each mode is one way an upstream can fail a gateway:

- ``silent``: reads the request and never sends a byte.
- ``trickle_headers``: starts the status line, then sends one header byte per
  ``interval`` seconds and never ends the headers.
- ``trickle_body``: sends complete headers with ``Content-Length: 1000``, then
  one body byte per ``interval`` seconds.
- ``reset``: reads the request, then resets the connection (RST), so the
  client cannot tell whether the order was acted on.
- ``error``: returns status 500.
- ``ok``: returns status 201 with a resource id.

Every loop stops after ``max_bytes`` bytes, when the client goes away, or when
the server stops, so no handler outlives its test by more than one interval.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

MODES = ("silent", "trickle_headers", "trickle_body", "reset", "error", "ok")


class SlowUpstream(socketserver.ThreadingTCPServer):
    """The server; ``mode`` may change between requests."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str, interval: float = 2.0, max_bytes: int = 30) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.interval = interval
        self.max_bytes = max_bytes
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.BaseRequestHandler):
    server: SlowUpstream

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        path = self._read_request(sock)
        if path is None:
            return
        server = self.server
        mode = server.mode
        with server.lock:
            server.requests[mode] += 1
        try:
            getattr(self, f"_{mode}")(sock, path)
        except OSError:
            pass  # the gateway closed the connection, which is what tests expect

    def _read_request(self, sock: socket.socket) -> str | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            body += chunk
        return lines[0].split(" ")[1]

    def _drip(self, sock: socket.socket, byte: bytes) -> None:
        for _ in range(self.server.max_bytes):
            if self.server.stopping.wait(self.server.interval):
                return
            sock.sendall(byte)

    def _silent(self, sock: socket.socket, path: str) -> None:
        for _ in range(self.server.max_bytes):
            if self.server.stopping.wait(self.server.interval):
                return
            sock.setblocking(False)
            try:
                if sock.recv(1) == b"":
                    return  # the client hung up
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)

    def _trickle_headers(self, sock: socket.socket, path: str) -> None:
        sock.sendall(b"HTTP/1.1 201 Created\r\nX-Slow: ")
        self._drip(sock, b"x")

    def _trickle_body(self, sock: socket.socket, path: str) -> None:
        sock.sendall(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        self._drip(sock, b" ")

    def _reset(self, sock: socket.socket, path: str) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _error(self, sock: socket.socket, path: str) -> None:
        self._answer(sock, 500, {"error": "upstream broke"})

    def _ok(self, sock: socket.socket, path: str) -> None:
        with self.server.lock:
            number = self.server.requests["ok"]
        self._answer(sock, 201, {"resource_id": f"slow-{number}"})

    def _answer(self, sock: socket.socket, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + data)


@contextmanager
def run_slow_upstream(
    mode: str, *, interval: float = 2.0, max_bytes: int = 30
) -> Iterator[SlowUpstream]:
    """Serve a misbehaving upstream on a free 127.0.0.1 port until the block ends."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    server = SlowUpstream(mode, interval, max_bytes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
