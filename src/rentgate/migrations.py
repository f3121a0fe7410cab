"""Alembic helpers: upgrade to head and read the current and head revisions."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection


def migrations_dir() -> Path:
    """Find the ``migrations`` folder of the checkout rentgate runs from."""
    candidates = [
        Path(__file__).resolve().parents[2] / "migrations",
        Path.cwd() / "migrations",
    ]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError(
        "Alembic migrations folder not found next to the package or in the current "
        "directory; run rentgate from the project checkout."
    )


def alembic_config(database_url: str) -> Config:
    """Build an Alembic config pointing at ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Apply every migration up to head."""
    command.upgrade(alembic_config(database_url), "head")


@cache
def head_revision() -> str | None:
    """Return the newest revision in the migrations folder."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head()


def current_revision(connection: Connection) -> str | None:
    """Return the revision the database is at."""
    return MigrationContext.configure(connection).get_current_revision()
