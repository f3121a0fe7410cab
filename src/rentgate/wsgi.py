"""WSGI entry point for gunicorn: ``rentgate.wsgi:app``."""

from rentgate import create_app

app = create_app()
