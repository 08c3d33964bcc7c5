"""The migrations build, on both databases, exactly the schema the code declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from adapters.sql.engine import create_engine_for
from adapters.sql.migrate import current_revision, head_revision, upgrade
from adapters.sql.tables import metadata


def test_upgrade_builds_the_declared_schema(empty_database_url: str) -> None:
    engine = create_engine_for(empty_database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            assert set(inspect(connection).get_table_names()) == set(metadata.tables) | {
                "alembic_version"
            }
        upgrade(engine)  # already at head: nothing to do
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
