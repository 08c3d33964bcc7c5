"""The repositories of the SQL unit of work: SQLAlchemy Core statements on one connection.

Every statement goes through :class:`adapters.sql.engine.SqlConnection`, which turns database
errors meaning "another transaction got in the way" into ConcurrencyError. Nothing is cached
across units of work: each one reads what it needs.
"""

from adapters.sql.repositories.archive import SqlArchiveRepository
from adapters.sql.repositories.lifecycle import SqlLifecycleRepository
from adapters.sql.repositories.links import SqlLinkRepository, SqlSeparationRepository
from adapters.sql.repositories.messaging import (
    SqlJournalRepository,
    SqlNotificationRepository,
    SqlOutbox,
)
from adapters.sql.repositories.persons import SqlPersonRepository
from adapters.sql.repositories.records import SqlRecordRepository
from adapters.sql.repositories.reviews import SqlModelRepository, SqlReviewRepository
from adapters.sql.repositories.security import (
    SqlAssertionRepository,
    SqlClientRepository,
    SqlSessionRepository,
    SqlUserRepository,
)

__all__ = [
    "SqlArchiveRepository",
    "SqlAssertionRepository",
    "SqlClientRepository",
    "SqlSessionRepository",
    "SqlUserRepository",
    "SqlJournalRepository",
    "SqlLifecycleRepository",
    "SqlLinkRepository",
    "SqlModelRepository",
    "SqlNotificationRepository",
    "SqlOutbox",
    "SqlPersonRepository",
    "SqlRecordRepository",
    "SqlReviewRepository",
    "SqlSeparationRepository",
]
