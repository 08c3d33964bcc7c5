"""Bring a database to the schema this code expects (Alembic, driven from code).

No ``alembic.ini`` is needed: the configuration is built here and points at the
``migrations`` folder of this package.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from adapters.sql.engine import READ_ONLY_OPTION

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration for this package's migrations (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine) -> None:
    """Apply every pending migration, in one transaction (DDL is transactional on both
    databases). Database errors propagate; nothing is applied then."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The latest revision of the code. Raises alembic.util.CommandError when the history
    has several heads (a merge migration is missing), RuntimeError when it has none."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration in {MIGRATIONS_DIR}")
    return head
