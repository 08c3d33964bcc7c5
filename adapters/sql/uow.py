"""The unit of work of the SQL adapter: one connection, one transaction, every repository.

A unit of work is used once, as a context manager::

    with factory() as uow:
        ...
        uow.commit()

Leaving the block without ``commit()`` rolls back. Writers on SQLite start with
``BEGIN IMMEDIATE`` (see ``adapters.sql.engine``), so entering a writing unit of work may wait
for another writer; read-only units of work never wait.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

from sqlalchemy import Connection, Engine, text

from adapters.sql.audit import SqlAuditLog
from adapters.sql.engine import READ_ONLY_OPTION, SqlConnection, translated_errors
from adapters.sql.repositories import (
    SqlArchiveRepository,
    SqlAssertionRepository,
    SqlClientRepository,
    SqlJournalRepository,
    SqlLifecycleRepository,
    SqlLinkRepository,
    SqlModelRepository,
    SqlNotificationRepository,
    SqlOutbox,
    SqlPersonRepository,
    SqlRecordRepository,
    SqlReviewRepository,
    SqlSeparationRepository,
    SqlSessionRepository,
    SqlUserRepository,
)

__all__ = ["SqlUnitOfWork", "SqlUnitOfWorkFactory"]

# hashtextextended gives a 64-bit key from any text; a collision only serializes more. The
# keys are locked in sorted order, one statement for all of them.
_ADVISORY_LOCKS = text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended(key, 0))) FROM "
    "(SELECT unnest(CAST(:keys AS text[])) AS key ORDER BY 1) AS sorted_keys"
)


class SqlUnitOfWork:
    """Implements :class:`mpi.ports.UnitOfWork` on one SQLAlchemy Core connection.

    The repositories exist between ``__enter__`` and ``__exit__``. Record history rows, events
    and notifications are buffered and written at ``commit()``, each kind in one statement.
    """

    records: SqlRecordRepository
    persons: SqlPersonRepository
    links: SqlLinkRepository
    separations: SqlSeparationRepository
    reviews: SqlReviewRepository
    models: SqlModelRepository
    outbox: SqlOutbox
    notifications: SqlNotificationRepository
    journal: SqlJournalRepository
    archive: SqlArchiveRepository
    lifecycle: SqlLifecycleRepository
    clients: SqlClientRepository
    users: SqlUserRepository
    assertions: SqlAssertionRepository
    sessions: SqlSessionRepository

    def __init__(
        self, engine: Engine, *, read_only: bool = False, master_authority: str = "GCS"
    ) -> None:
        self._engine = engine
        self._read_only = read_only
        self._master_authority = master_authority
        self._sql: SqlConnection | None = None

    def __enter__(self) -> Self:
        """Open the connection and begin the transaction. Raises RuntimeError when already
        entered, ConcurrencyError when SQLite stayed locked by another writer past the busy
        timeout, DatabaseUnavailableError when the database cannot be reached."""
        if self._sql is not None:
            raise RuntimeError("this unit of work is already in use")
        with translated_errors():
            connection = self._engine.connect()
        try:
            if self._read_only:
                connection.execution_options(**self._read_only_options(connection))
            sql = SqlConnection(connection)
            with sql.translated():
                connection.begin()
        except BaseException:
            connection.close()
            raise
        self._sql = sql
        self.records = SqlRecordRepository(sql)
        self.persons = SqlPersonRepository(sql, self._master_authority)
        self.links = SqlLinkRepository(sql)
        self.separations = SqlSeparationRepository(sql)
        self.reviews = SqlReviewRepository(sql)
        self.models = SqlModelRepository(sql)
        self.outbox = SqlOutbox(sql)
        self.notifications = SqlNotificationRepository(sql)
        self.journal = SqlJournalRepository(sql)
        self.archive = SqlArchiveRepository(sql)
        self.clients = SqlClientRepository(sql)
        self.users = SqlUserRepository(sql)
        self.assertions = SqlAssertionRepository(sql)
        self.sessions = SqlSessionRepository(sql)
        self.lifecycle = SqlLifecycleRepository(sql)
        self.audit = SqlAuditLog()
        return self

    @staticmethod
    def _read_only_options(connection: Connection) -> dict[str, Any]:
        options: dict[str, Any] = {READ_ONLY_OPTION: True}
        if connection.dialect.name == "postgresql":
            options["postgresql_readonly"] = True  # BEGIN READ ONLY, no extra round trip
        return options

    def __exit__(self, *exc_info: object) -> None:
        """Roll back whatever was not committed and give the connection back."""
        sql = self._sql
        if sql is None:
            return
        self._sql = None
        try:
            self._discard_buffers()
            if sql.connection.in_transaction():
                sql.connection.rollback()
        finally:
            sql.connection.close()

    def commit(self) -> None:
        """Write the buffered events and notifications, then commit. Raises ConcurrencyError
        when the database refused the transaction for a conflict (the caller may retry the
        whole unit of work), RuntimeError outside the ``with`` block."""
        sql = self._require()
        self.notifications.flush()
        if sql.is_postgresql:  # the trail travels with the COMMIT
            trail = self.audit.take_pipelined()
        else:
            trail = []
            with sql.translated():
                self.audit.flush(sql.connection)
        sql.insert_and_commit([
            self.records.take_pending(),
            self.outbox.take_pending(),
        ], trail)

    def rollback(self) -> None:
        """Forget everything done since the last commit. Raises RuntimeError outside the
        ``with`` block."""
        sql = self._require()
        self._discard_buffers()
        sql.connection.rollback()

    def lock(self, keys: Iterable[str]) -> None:
        """Take transaction-scoped advisory locks on PostgreSQL, in sorted order so that two
        units of work locking overlapping keys cannot deadlock each other. A no-op on SQLite,
        where writers are already serialized. Raises ConcurrencyError on a deadlock."""
        sql = self._require()
        if not sql.is_postgresql:
            return
        wanted = sorted(set(keys))
        if wanted:
            sql.execute(_ADVISORY_LOCKS, {"keys": wanted})

    def _require(self) -> SqlConnection:
        if self._sql is None:
            raise RuntimeError("the unit of work is used outside its with block")
        return self._sql

    def _discard_buffers(self) -> None:
        self.records.discard()
        self.outbox.discard()
        self.notifications.discard()
        self.audit.discard()


class SqlUnitOfWorkFactory:
    """Makes units of work on one engine. ``master_authority`` is the code of the regional
    master domain, whose identifiers are person numbers (used by person searches)."""

    def __init__(self, engine: Engine, master_authority: str = "GCS") -> None:
        self.engine = engine
        self.master_authority = master_authority

    def __call__(self, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine, read_only=read_only, master_authority=self.master_authority
        )
