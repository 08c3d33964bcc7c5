"""The service's parts, built by the composition root (``bootstrap.py``) and passed to
whatever serves them: the listeners, the HTTP routes, the background jobs, the commands.

A container is a context manager: leaving it gives the database connections back::

    with bootstrap(settings) as container:
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from types import TracebackType
from typing import Self

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from adapters.auth.service import AuthService
from adapters.dicom.lifecycle import ArchiveLifecycle
from adapters.dicom.preservation import Compressor
from adapters.dicom.service import DicomArchive
from adapters.dicom.web import DicomWeb
from adapters.hl7v2.application import Hl7Application
from adapters.hl7v2.notifier import PixNotifier
from adapters.jobs import JobBoard
from adapters.settings import Settings
from adapters.sql.audit import SqlAuditTrail
from adapters.sql.console import ConsoleQueries
from adapters.sql.tables import archive_instances, review_tasks
from adapters.sql.uow import SqlUnitOfWorkFactory
from mpi.authorities import AuthorityRegistry
from mpi.handlers import EventDispatcher
from mpi.identity import IdentityService
from mpi.matching.engine import ProbabilisticMatcher
from mpi.model import ReviewStatus

__all__ = ["SystemClock", "Container"]


class SystemClock:
    """Implements :class:`mpi.ports.Clock` with the system's clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    registry: AuthorityRegistry
    engine: Engine
    uow_factory: SqlUnitOfWorkFactory
    clock: SystemClock
    matcher: ProbabilisticMatcher
    identity: IdentityService
    hl7: Hl7Application
    audit: SqlAuditTrail
    dicom: DicomArchive
    dicomweb: DicomWeb
    dispatcher: EventDispatcher
    notifier: PixNotifier
    jobs: JobBoard
    lifecycle: ArchiveLifecycle
    compressor: Compressor
    auth: AuthService
    closed: bool = field(default=False, init=False)

    @cached_property
    def console(self) -> ConsoleQueries:
        """The console's read-only aggregations (counts by establishment and month...)."""
        return ConsoleQueries(self.engine)

    def archive_health(self) -> dict[str, object]:
        """What /health says of the archive's preservation: instances whose stored file no
        longer matches its SHA-256 (fixity), and the compression backlog."""
        with self.uow_factory(read_only=True) as uow:
            failures = [i.sop_instance_uid for i in uow.archive.fixity_failures()]
        return {"fixity_failures": len(failures), "fixity_failed_instances": failures[:100]}

    def metrics_state(self) -> Iterator[tuple[str, str, dict[str, str], float | None]]:
        """The gauges /metrics reads at scrape time (name, help, value; None: unknown now):
        each job's backlog, the open review tasks, the instances whose stored file failed
        its fixity check, the jobs' failed passes."""
        for name in self.jobs.jobs:
            yield ("mpi_job_backlog", "What waits for each background job", {"job": name},
                   self.jobs.backlog(name))
        review = fixity = None
        try:
            with self.engine.connect() as connection:
                review = connection.scalar(select(func.count()).select_from(review_tasks)
                                           .where(review_tasks.c.status == ReviewStatus.OPEN))
                fixity = connection.scalar(select(func.count()).select_from(archive_instances)
                                           .where(archive_instances.c.fixity_failed_at
                                                  .is_not(None)))
        except Exception:  # the database is down: the gauges are absent, /health says why
            pass
        yield "mpi_review_queue_size", "Review tasks waiting for a decision", {}, review
        yield ("mpi_fixity_errors", "Stored instances whose file no longer matches its SHA-256",
               {}, fixity)
        for name, state in self.jobs.states.items():
            yield ("mpi_job_failures", "Failed passes of each background job since start",
                   {"job": name}, state.failures)

    def database_ok(self) -> bool:
        """Whether the database answers a trivial query now."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:  # any failure to reach the database means "not ok", nothing more
            return False

    def close(self) -> None:
        """Give the database connections back (idempotent)."""
        if not self.closed:
            self.closed = True
            self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
