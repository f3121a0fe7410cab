"""API keys are masked in gunicorn's access and error lines too."""

from __future__ import annotations

import logging
from datetime import timedelta

from gunicorn.config import Config

from rentgate.logs import RedactFilter, RedactingGunicornLogger

KEY = "rg_0123456789ab_S3cretPart-with_underscores"


def test_error_line_key_is_masked():
    record = logging.LogRecord(
        "gunicorn.error",
        logging.WARNING,
        __file__,
        1,
        "Invalid HTTP request line: %r",
        (f"GET /credit?api_key={KEY} HTTP/1.1",),
        None,
    )

    RedactFilter().filter(record)

    assert "S3cretPart" not in record.getMessage()
    assert "rg_0123456789ab_***" in record.getMessage()


def test_access_atoms_key_is_masked():
    class Response:
        status = "404 NOT FOUND"
        headers = [("X-Request-ID", KEY)]
        sent = 10

    class Request:
        headers = [("AUTHORIZATION", f"Bearer {KEY}")]
        method = "GET"
        path = f"/leases/{KEY}"
        query = ""
        uri = f"/leases/{KEY}"
        version = (1, 1)

    logger = RedactingGunicornLogger(Config())
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/leases/{KEY}",
        "PATH_INFO": f"/leases/{KEY}",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }

    atoms = logger.atoms(Response(), Request(), environ, timedelta(0))

    assert all("S3cretPart" not in str(value) for value in atoms.values())
    assert atoms["U"] == "/leases/rg_0123456789ab_***"
