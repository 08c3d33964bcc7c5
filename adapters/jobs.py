"""The background work `mpi serve` runs: a list of jobs declared in the composition root
(``adapters/bootstrap.py``), each a loop with its interval.

A job's pass does what is due and says whether more is waiting (then the next pass starts at
once, else after the interval). A pass that raises is logged and recorded, and the loop goes
on: a background job never stops the service. Every job's last run, last error and backlog
are shown on ``/health``; ``mpi jobs`` lists them and ``mpi jobs run NAME`` runs one pass by
hand. SIGTERM sets the stop event: each loop finishes its pass and ends.

Several `mpi serve` processes may run the same jobs on one database: each job claims its
rows with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), so an item is worked on once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.dicom.lifecycle import ArchiveLifecycle
from adapters.dicom.preservation import Compressor, check_fixity
from adapters.errors import AdapterError
from adapters.hl7v2.notifier import PixNotifier
from adapters.sql.uow import SqlUnitOfWorkFactory
from mpi.handlers import EventDispatcher
from mpi.model import Consumer

__all__ = ["Job", "JobState", "JobBoard", "UnknownJobError", "outbox_job",
           "notification_job", "retention_job", "compression_job", "fixity_job"]

log = logging.getLogger("mpi.jobs")


class UnknownJobError(AdapterError, LookupError):
    """No job of that name is declared."""


@dataclass(frozen=True)
class Job:
    """A background loop: ``run_once`` does one pass and returns True when more work is
    waiting; ``backlog`` counts what waits (None when the job cannot tell)."""

    name: str
    description: str
    interval: float
    run_once: Callable[[], Awaitable[bool]]
    backlog: Callable[[], int] | None = None


@dataclass
class JobState:
    """What a job did last, in this process."""

    runs: int = 0
    failures: int = 0
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_seconds: float | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


class JobBoard:
    """The declared jobs and what each did; runs them until told to stop."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        self.jobs = {job.name: job for job in jobs}
        self.states = {job.name: JobState() for job in jobs}

    def job(self, name: str) -> Job:
        """Raises UnknownJobError."""
        try:
            return self.jobs[name]
        except KeyError:
            raise UnknownJobError(
                f"no job {name!r}; the jobs are {', '.join(self.jobs) or 'none'}") from None

    async def run_once(self, name: str) -> bool:
        """One pass of a job, recorded in its state. Raises UnknownJobError, and whatever the
        pass raised (after recording it)."""
        job, state = self.job(name), self.states[name]
        state.last_started = datetime.now(UTC)
        started = time.perf_counter()
        try:
            more = await job.run_once()
        except Exception as exc:
            state.failures += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            state.last_error_at = datetime.now(UTC)
            raise
        finally:
            state.runs += 1
            state.last_finished = datetime.now(UTC)
            state.last_seconds = time.perf_counter() - started
        return more

    async def run(self, stop: asyncio.Event) -> None:
        """Run every job's loop until ``stop`` is set."""
        await asyncio.gather(*(self._loop(name, stop) for name in self.jobs))

    async def _loop(self, name: str, stop: asyncio.Event) -> None:
        interval = self.jobs[name].interval
        while not stop.is_set():
            try:
                more = await self.run_once(name)
            except Exception:
                log.exception("job %s failed; it runs again in %.1f s", name, interval)
                more = False
            if more:
                await asyncio.sleep(0)  # let the other loops and servers run between passes
                continue
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass

    def backlog(self, name: str) -> int | None:
        """What waits for a job now (None when it cannot tell or the count failed)."""
        counter = self.job(name).backlog
        if counter is None:
            return None
        try:
            return counter()
        except Exception:  # the database may be down: /health says so elsewhere
            log.debug("backlog of job %s could not be counted", name, exc_info=True)
            return None

    def snapshot(self) -> list[dict[str, Any]]:
        """Every job's state and backlog, JSON-ready (for /health and `mpi jobs`)."""
        out = []
        for name, job in self.jobs.items():
            state = self.states[name]
            out.append({
                "name": name, "description": job.description, "interval": job.interval,
                "runs": state.runs, "failures": state.failures,
                "last_run": _iso(state.last_finished),
                "last_seconds": round(state.last_seconds, 4) if state.last_seconds else None,
                "last_error": state.last_error, "last_error_at": _iso(state.last_error_at),
                "backlog": self.backlog(name),
            })
        return out


def outbox_job(dispatcher: EventDispatcher, interval: float) -> Job:
    """The outbox dispatcher as a job; an event its handlers failed on is logged (it is
    retried later with backoff)."""

    async def dispatch() -> bool:
        report = await asyncio.to_thread(dispatcher.dispatch_due)
        for event_id, event_type, error in report.failures:
            log.warning("outbox event %d (%s) failed, retried later: %s", event_id,
                        event_type, error)
        return report.full

    return Job("outbox", "hands each domain event to the handlers subscribed to its type",
               interval, dispatch, dispatcher.backlog)


def notification_job(notifier: PixNotifier, consumer: Consumer,
                     uow_factory: SqlUnitOfWorkFactory, interval: float) -> Job:
    """ITI-10 delivery to one consumer as a job."""

    def pending() -> int:
        with uow_factory(read_only=True) as uow:
            return uow.notifications.pending_count(consumer.name)

    async def deliver() -> bool:
        return await notifier.deliver_due(consumer)

    return Job(f"notify:{consumer.name}",
               f"sends PIX update notifications (ITI-10) to {consumer.host}:{consumer.port}",
               interval, deliver, pending)


def retention_job(lifecycle: ArchiveLifecycle, interval: float) -> Job:
    """The periodic retention sweep: every study's end of retention computed again (catches
    whatever the outbox handler missed); its backlog is the studies never computed."""

    async def sweep() -> bool:
        await asyncio.to_thread(lifecycle.sweep)
        return False

    return Job("retention", "recomputes the end of retention of every study (R.1112-7)",
               interval, sweep, lifecycle.uncomputed)


def compression_job(compressor: Compressor, interval: float, batch: int) -> Job:
    """Lossless compression of the instances due, a batch per pass, verified bit for bit."""

    async def compress() -> bool:
        report = await asyncio.to_thread(compressor.run, batch)
        for sop, reason in report.failed:
            log.warning("instance %s left uncompressed: %s", sop, reason)
        return report.compressed + len(report.failed) == batch

    return Job("compression", f"compresses stored instances losslessly "
               f"({compressor.settings.transfer_syntax}) after "
               f"{compressor.settings.after_days:g} days", interval, compress,
               lambda: compressor.backlog()[0])


def fixity_job(lifecycle: ArchiveLifecycle, compressor: Compressor, interval: float,
               batch: int) -> Job:
    """Fixity: the longest unchecked stored files re-read against their SHA-256."""

    async def check() -> bool:
        await asyncio.to_thread(check_fixity, lifecycle.uow_factory, lifecycle.blobs,
                                lifecycle.clock, lifecycle.audit, limit=batch)
        return False

    return Job("fixity", "re-reads stored files against their SHA-256", interval, check)
