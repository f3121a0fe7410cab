"""The Alembic migrations create exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from rentgate.db import Base
from rentgate.migrations import current_revision, head_revision


def test_migrated_schema_matches_models(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, Base.metadata)
            revision = current_revision(connection)
    finally:
        engine.dispose()

    assert differences == []
    assert revision == head_revision()
