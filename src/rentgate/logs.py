"""Logging set-up: one line per record on stderr, with the request id."""

from __future__ import annotations

import logging
import sys

from flask import g, has_request_context


class RequestIdFilter(logging.Filter):
    """Adds the current request id, or ``-`` outside a request, to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = "-"
        if has_request_context():
            request_id = g.get("request_id", "-")
        record.request_id = request_id
        return True


def configure_logging(level: str) -> None:
    """Send rentgate's logs to stderr once, at ``level``."""
    logger = logging.getLogger("rentgate")
    logger.setLevel(level)
    if any(getattr(h, "rentgate", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.rentgate = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"
        )
    )
    logger.addHandler(handler)
    logger.propagate = False
