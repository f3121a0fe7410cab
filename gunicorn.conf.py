"""Gunicorn settings for rentgate; every value can be overridden from the environment.

Timeouts follow the provider deadline (RENTGATE_PROVIDER_DEADLINE, 10 s by
default), which bounds the slowest part of an order:

- ``timeout`` (RENTGATE_WORKER_TIMEOUT) must exceed the deadline, so that a
  slow provider ends in a 504 from rentgate rather than a killed worker. The
  app's settings reject a deadline that is not shorter.
- ``graceful_timeout`` is at least the deadline plus 5 s: after SIGTERM a
  worker stops accepting, finishes the order it is running (provider call
  and settlement included) and only then exits.

Metrics: prometheus_client runs in multiprocess mode. PROMETHEUS_MULTIPROC_DIR
is set here, before any worker imports prometheus_client; when it is not given,
each gunicorn master makes its own temporary folder. The folder is emptied at
start and every finished worker is marked dead in ``child_exit``.
"""

import glob
import os
import tempfile

bind = os.environ.get("RENTGATE_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("RENTGATE_WORKERS", "2"))
worker_class = "sync"

_provider_deadline = float(os.environ.get("RENTGATE_PROVIDER_DEADLINE", "10"))
timeout = int(float(os.environ.get("RENTGATE_WORKER_TIMEOUT", "30")))
graceful_timeout = max(
    int(os.environ.get("RENTGATE_GRACEFUL_TIMEOUT", "30")),
    int(_provider_deadline) + 5,
)
if timeout <= _provider_deadline:
    raise RuntimeError(
        f"RENTGATE_WORKER_TIMEOUT ({timeout}s) must be longer than "
        f"RENTGATE_PROVIDER_DEADLINE ({_provider_deadline}s); raise the timeout "
        "or shorten the deadline."
    )

keepalive = 5
accesslog = os.environ.get("RENTGATE_ACCESS_LOG", "-")
if accesslog.lower() in ("", "none", "off"):
    accesslog = None
# The path without its query string, so a key sent by mistake as ?token=...
# never reaches the access log, and the request id to join rentgate's lines.
access_log_format = (
    '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'
)
errorlog = "-"
# Masks API keys that a client put in a path, header or malformed request line.
logger_class = "rentgate.logs.RedactingGunicornLogger"
loglevel = os.environ.get("RENTGATE_GUNICORN_LOG_LEVEL", "info")
preload_app = os.environ.get("RENTGATE_PRELOAD", "false").lower() == "true"
max_requests = int(os.environ.get("RENTGATE_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
limit_request_line = 8190
limit_request_fields = 100
# Gunicorn 24+ opens a control socket at one fixed path per user; several
# gateways on one host would fight over it, and rentgate does not use it.
control_socket_disable = True

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="rentgate-metrics-"
    )


def on_starting(server):  # noqa: ANN001 - gunicorn's hook signature
    """Remove metric files that an earlier master left behind."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for path in glob.glob(os.path.join(folder, "*.db")):
        os.remove(path)


def post_fork(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    """Drop database connections a preloaded app inherited from the master.

    Sharing a socket between processes corrupts the connection, so the child
    starts a new pool; ``close=False`` leaves the parent's sockets alone.
    """
    app = getattr(server.app, "callable", None) if preload_app else None
    extensions = getattr(app, "extensions", None) or {}
    runtime = extensions.get("rentgate")
    if runtime is not None:
        runtime.engine.dispose(close=False)


def child_exit(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    """Mark the worker's metric files dead so live gauges drop its values."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
