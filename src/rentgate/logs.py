"""Logging set-up: one JSON line per record on stderr, with secrets masked.

Every record carries the request id. Each request ends with one ``request``
line (request id, tenant id, method, route, status, duration) from the logger
``rentgate.requests``; each provider submit gets one line from
``rentgate.providers.calls`` (see ``rentgate.metrics``).

``redact`` masks API keys, Bearer tokens and passwords in URLs in the final
text of every record, traceback included, so a secret that reaches a message
by accident still does not reach the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

MASK = "***"

# Patterns of secrets; group 1 is kept and the rest of the match is masked.
SECRET_PATTERNS = (
    # rentgate API keys, rg_<12 hex prefix>_<secret>: the prefix stays.
    re.compile(r"(rg_[0-9a-f]{12}_)[A-Za-z0-9_\-]+"),
    # Authorization header values.
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    # Passwords in URLs such as postgresql://user:password@host/db.
    re.compile(r"([a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s/]+(?=@)", re.IGNORECASE),
    # password=... in DSNs and query strings.
    re.compile(r"(?i)(password\s*=\s*)[^\s&;]+"),
)

# Attributes every LogRecord has; anything else was passed with ``extra``.
_RECORD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
}


# Text that each pattern of SECRET_PATTERNS needs, in order, casefolded.
# Most log lines contain none of them, and four substring tests cost less
# than four regular-expression scans.
_PATTERN_MARKERS = ("rg_", "bearer", "://", "password")


def redact(text: str) -> str:
    """Mask every secret that ``SECRET_PATTERNS`` finds in ``text``."""
    folded = text.casefold()
    for marker, pattern in zip(_PATTERN_MARKERS, SECRET_PATTERNS, strict=True):
        if marker not in folded:
            continue
        text = pattern.sub(lambda match: match.group(1) + MASK, text)
    return text


class RequestIdFilter(logging.Filter):
    """Adds the current request id, or ``-`` outside a request, to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = "-"
        if has_request_context():
            request_id = g.get("request_id", "-")
        record.request_id = request_id
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class RedactingFormatter(logging.Formatter):
    """The plain-text format, with secrets masked like the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str, log_format: str = "json") -> None:
    """Send rentgate's logs to stderr once, at ``level``, as JSON or text."""
    logger = logging.getLogger("rentgate")
    logger.setLevel(level)
    if any(getattr(h, "rentgate", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.rentgate = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            RedactingFormatter(
                "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s "
                "%(message)s"
            )
        )
    logger.addHandler(handler)
    logger.propagate = False


request_log = logging.getLogger("rentgate.requests")


def init_app(app: Flask) -> None:
    """Log one line per request once its response is ready."""

    @app.before_request
    def start_clock() -> None:
        g.log_started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        started = g.get("log_started", time.perf_counter())
        caller = g.get("caller")
        route = request.url_rule.rule if request.url_rule else None
        fields = {
            "tenant_id": getattr(caller, "tenant_id", None),
            "method": request.method,
            "route": route,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        request_log.info(
            "request %s %s status=%s",
            request.method,
            request.path,
            response.status_code,
            extra=fields,
        )
        return response


class RedactFilter(logging.Filter):
    """Masks secrets in records that other libraries format, such as gunicorn's."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


try:
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:  # gunicorn is only needed to serve, not to import rentgate
    _GunicornLogger = None

if _GunicornLogger is not None:

    class RedactingGunicornLogger(_GunicornLogger):
        """Gunicorn's logger with API keys masked in access and error lines."""

        def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> Any:
            atoms = super().atoms(resp, req, environ, request_time)
            return {
                name: redact(value) if isinstance(value, str) else value
                for name, value in atoms.items()
            }

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            self.error_log.addFilter(RedactFilter())
            self.access_log.addFilter(RedactFilter())
