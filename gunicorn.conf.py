"""Gunicorn settings for rentgate; every value can be overridden from the environment.

The worker timeout must exceed RENTGATE_PROVIDER_DEADLINE, so that a slow
provider ends in a 504 from rentgate rather than a killed worker.
"""

import os

bind = os.environ.get("RENTGATE_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("RENTGATE_WORKERS", "2"))
worker_class = "sync"
timeout = int(float(os.environ.get("RENTGATE_WORKER_TIMEOUT", "30")))
# In-flight orders get this long to finish after SIGTERM before workers stop.
graceful_timeout = int(os.environ.get("RENTGATE_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
accesslog = os.environ.get("RENTGATE_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("RENTGATE_GUNICORN_LOG_LEVEL", "info")
preload_app = False
max_requests = int(os.environ.get("RENTGATE_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
limit_request_line = 8190
limit_request_fields = 100


def post_fork(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    """Drop database connections inherited from the master after a preload."""
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("rentgate") if app else None
    if runtime is not None:
        runtime.engine.dispose(close=False)
