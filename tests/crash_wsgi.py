"""WSGI entry point for crash tests: ``tests.crash_wsgi:app``."""

from rentgate import create_app
from tests.crash_provider import install_settle_crash

install_settle_crash()
app = create_app()
