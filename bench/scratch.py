"""The database a benchmark runs on: an SQLite file in its work folder, or a scratch
PostgreSQL database (re)created on the server of MPI_BENCH_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def database_url(kind: str, workdir: Path, name: str) -> str:
    """``kind`` "sqlite" or "postgresql"; a PostgreSQL database ``name`` is dropped (its
    sessions ended) and created empty."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'mpi.sqlite3'}"
    base = make_url(os.environ.get("MPI_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)
