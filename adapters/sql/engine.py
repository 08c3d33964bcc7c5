"""Engines for the two supported databases, and what their errors mean.

SQLite (single-site deployments, tests) runs in WAL mode with writers serialized: every
transaction starts with ``BEGIN IMMEDIATE``, so a unit of work that reads and then decides
cannot be overtaken by another writer. A connection given the execution option
``mpi_read_only=True`` starts with a plain ``BEGIN`` instead and never waits for writers.

PostgreSQL (``postgresql+psycopg://``) runs at READ COMMITTED; units of work serialize what
they must with advisory locks (see ``SqlUnitOfWork.lock``).

:class:`SqlConnection` is the boundary where database errors meaning "another transaction got
in the way" become :class:`mpi.errors.ConcurrencyError`, and those meaning "the database is out
of reach" (stopped, restarting, its disk failed) :class:`DatabaseUnavailableError`; other errors
propagate unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, Engine, Executable, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, NestedTransaction, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from adapters.errors import DatabaseUnavailableError
from mpi.errors import ConcurrencyError

__all__ = [
    "READ_ONLY_OPTION",
    "DatabaseUnavailableError",
    "SqlConnection",
    "create_engine_for",
    "default_sqlite_url",
    "is_retryable",
    "is_unavailable",
    "translated_errors",
]

READ_ONLY_OPTION = "mpi_read_only"

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA synchronous=NORMAL",
)

# PostgreSQL SQLSTATEs after which the whole transaction may simply be tried again.
_RETRYABLE_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "23505",  # unique_violation: a concurrent transaction inserted the same key first
        "55P03",  # lock_not_available
    }
)
# sqlite3 (Python >= 3.11) names the extended result code of each error.
_RETRYABLE_SQLITE_ERRORS = frozenset(
    {
        "SQLITE_BUSY",
        "SQLITE_BUSY_SNAPSHOT",
        "SQLITE_BUSY_TIMEOUT",
        "SQLITE_LOCKED",
        "SQLITE_CONSTRAINT_UNIQUE",
        "SQLITE_CONSTRAINT_PRIMARYKEY",
    }
)


def default_sqlite_url(data_dir: Path) -> str:
    """The URL of the SQLite database kept in ``data_dir``."""
    return f"sqlite:///{data_dir / 'mpi.sqlite3'}"


def create_engine_for(url: str) -> Engine:
    """An engine configured for the index on SQLite or PostgreSQL.

    For a SQLite file, creates its parent folder. Raises ValueError for any other kind of
    database, and OSError when the folder cannot be created.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        # A ping before each checkout (SELECT 1, a fraction of a millisecond on a local
        # server): after a restart of PostgreSQL every connection pooled before it is dead,
        # and without the ping the first unit of work on each, in each process, failed and
        # was answered "try again" although the database was back (seen in the database
        # restart drill: a FHIR read answered 503 after /health/ready said 200). A connection
        # that dies during a unit of work still invalidates the pool and is retried as a
        # concurrency error (see is_retryable).
        return create_engine(parsed, pool_size=10, pool_pre_ping=True)
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Take BEGIN away from the sqlite3 module: it would not start a transaction before a
        # SELECT, breaking both isolation and our IMMEDIATE locking.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def is_retryable(exc: DBAPIError) -> bool:
    """True when a database error means a conflict with another transaction (retrying the
    whole unit of work may succeed) rather than a fault."""
    if exc.connection_invalidated:
        return True  # the server restarted or the connection broke: a fresh one may work
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _RETRYABLE_SQLSTATES
    error_name = getattr(orig, "sqlite_errorname", None)
    if error_name is not None:
        return error_name in _RETRYABLE_SQLITE_ERRORS
    return False


def is_unavailable(exc: DBAPIError) -> bool:
    """True when a database error means the database itself is out of reach, not that the
    statement was wrong (then nothing of the unit of work was applied)."""
    return isinstance(exc, (OperationalError, InterfaceError)) and not is_retryable(exc)


def translated_errors() -> _Translated:
    """A context that turns retryable database errors into ConcurrencyError and an
    unreachable database into DatabaseUnavailableError (for code outside a SqlConnection:
    opening a connection)."""
    return _Translated()


class SqlConnection:
    """The connection of one unit of work, translating retryable database errors."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.is_postgresql = connection.dialect.name == "postgresql"

    def execute(
        self,
        statement: Executable,
        parameters: Mapping[str, Any] | list[dict[str, Any]] | None = None,
    ) -> CursorResult[Any]:
        """Run one statement. Raises ConcurrencyError for a conflict with another transaction
        (deadlock, serialization failure, unique violation, SQLite busy); other database
        errors propagate unchanged."""
        with self.translated():
            return self.connection.execute(statement, parameters)

    def translated(self) -> _Translated:
        """A context that turns retryable database errors into ConcurrencyError."""
        return _Translated()

    def savepoint(self) -> NestedTransaction:
        """A SAVEPOINT: an error inside rolls back to it and leaves the transaction usable."""
        with self.translated():
            return self.connection.begin_nested()

    def insert_and_commit(self, batches: list[tuple[Table, list[dict[str, Any]]]],
                          statements: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        """Insert rows (one executemany per table) and commit. On PostgreSQL the inserts, the
        ``statements`` (psycopg text and parameters, PostgreSQL only) and the COMMIT travel
        together in one round trip (psycopg's pipeline mode): a unit of work ends with a
        single wait. Raises ConcurrencyError for a conflict (a unique violation aborts the
        transaction: nothing of it is committed)."""
        batches = [(table, rows) for table, rows in batches if rows]
        if statements and not self.is_postgresql:
            raise ValueError("pipelined statements are for PostgreSQL")
        if not self.is_postgresql:
            for table, rows in batches:
                self.execute(table.insert(), rows)
            with self.translated():
                self.connection.commit()
            return
        import psycopg
        from psycopg.types.json import Json

        raw = self.connection.connection.driver_connection
        assert raw is not None  # an open connection has its psycopg connection
        try:
            with raw.pipeline():
                with raw.cursor() as cursor:
                    for statement, parameters in statements:
                        cursor.execute(statement, parameters)
                    for table, rows in batches:
                        text, json_columns = _postgresql_insert(table, tuple(rows[0]))
                        cursor.executemany(text, [
                            {k: (Json(v) if k in json_columns else v) for k, v in row.items()}
                            for row in rows
                        ])
                raw.commit()
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) in _RETRYABLE_SQLSTATES:
                raise ConcurrencyError(
                    f"a concurrent transaction conflicted with this one: {exc}"
                ) from exc
            if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                self.connection.invalidate()  # a fresh connection next time
                raise DatabaseUnavailableError(f"the database is unavailable: {exc}") from exc
            raise
        with self.translated():
            self.connection.commit()  # SQLAlchemy's own state: psycopg has nothing left to send

    def insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT supporting ``ON CONFLICT`` on this connection's database."""
        return postgresql.insert(table) if self.is_postgresql else sqlite.insert(table)


@functools.lru_cache(maxsize=64)
def _postgresql_insert(table: Table, columns: tuple[str, ...]) -> tuple[str, frozenset[str]]:
    """The INSERT of these columns as psycopg text, and which of them hold JSON."""
    statement = table.insert().compile(dialect=_POSTGRESQL_DIALECT, column_keys=list(columns))
    json_columns = frozenset(c for c in columns if isinstance(table.c[c].type, JSON))
    return str(statement), json_columns


_POSTGRESQL_DIALECT = postgresql.psycopg.dialect()


class _Translated:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, DBAPIError) and is_retryable(exc):
            raise ConcurrencyError(
                f"a concurrent transaction conflicted with this one: {exc.orig}"
            ) from exc
        if isinstance(exc, DBAPIError) and is_unavailable(exc):
            raise DatabaseUnavailableError(
                f"the database is unavailable: {exc.orig}") from exc
