"""The ports the identity core needs from the outside world (implemented in ``adapters/``).

Use cases receive a :class:`UnitOfWork`; they never open or commit one themselves, so that the
caller can journal the inbound message in the same transaction as the change it caused.

The archive, which builds on the identity core, declares its own ports in
:mod:`mpi.archive.ports` (its repository, the blob store, and a unit of work that extends this
one): the identity core knows nothing of studies, so nothing here imports the archive.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, Self

from mpi.audit import AuditEvent
from mpi.events import Event, StoredEvent
from mpi.model import (
    Identifier,
    JournalEntry,
    JournalStatus,
    Link,
    Person,
    ReviewStatus,
    ReviewTask,
    SourceRecord,
)

__all__ = [
    "AuditTrail",
    "AuditLog",
    "Clock",
    "PersonQuery",
    "RecordRepository",
    "PersonRepository",
    "LinkRepository",
    "SeparationRepository",
    "ReviewRepository",
    "ModelRepository",
    "OutboxRepository",
    "PendingNotification",
    "NotificationRepository",
    "JournalRepository",
    "UnitOfWork",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class AuditTrail(Protocol):
    def record(self, event: AuditEvent) -> None:
        """Store one access event durably, in its own transaction (reads run in read-only
        units of work). Raises on failure: a request whose access cannot be traced fails."""
        ...

    def search(self, *, person_id: int | None = None, actor: str | None = None,
               limit: int = 100, since: datetime | None = None, until: datetime | None = None,
               offset: int = 0, event_id: int | None = None) -> list[AuditEvent]:
        """The latest events, newest first, optionally about one person or by one actor
        (named as recorded, ``user:jdupont``, or by its bare name, ``jdupont``, whatever the
        kind of actor)."""
        ...


@dataclass(frozen=True)
class PersonQuery:
    """Demographic search criteria (PDQ, PDQm). Names match birth or used names, folded, and a
    trailing ``*`` makes a prefix search (the postcode too). Empty criteria are ignored.

    Every record criterion must hold on one active record of the person. ``family_exact`` and
    ``given_exact`` compare a birth or used name, and the first given name, exactly as written
    (case and accents included). ``domain`` asks for persons holding an identifier in that
    domain, on any of their records. ``person_ids`` restricts the search to those persons.
    ``active`` False searches the persons merged into another instead of the active ones:
    they have no records left, so only ``person_ids`` can select them.
    """

    family: str | None = None
    given: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    postcode: str | None = None
    city: str | None = None
    identifier: Identifier | None = None
    family_exact: str | None = None
    given_exact: str | None = None
    phone: str | None = None
    domain: str | None = None
    person_ids: tuple[int, ...] | None = None
    active: bool = True

    def has_record_criteria(self) -> bool:
        """True when a criterion bears on the persons' records (all but ids and status)."""
        return any(
            (self.family, self.given, self.birth_date, self.sex, self.postcode, self.city,
             self.identifier, self.family_exact, self.given_exact, self.phone, self.domain)
        )

    def is_empty(self) -> bool:
        return not self.has_record_criteria() and self.person_ids is None

class RecordRepository(Protocol):
    def get(self, record_id: int) -> SourceRecord | None: ...

    def by_identifier(self, identifier: Identifier) -> SourceRecord | None:
        """The record of that identifier, whatever its status."""
        ...

    def add(self, record: SourceRecord) -> None:
        """Store a new record: assigns ``id``, sets ``version`` to 1, keeps it in the history."""
        ...

    def save(self, record: SourceRecord) -> None:
        """Store a changed record as its next version; every version stays in the history."""
        ...

    def with_qualified_ins(self, ins: Identifier) -> list[SourceRecord]:
        """Active records whose identity is qualified with this INS."""
        ...

    def retired_into(self, record_id: int) -> list[SourceRecord]:
        """Records folded directly into this one (A40/A47)."""
        ...

    def linked_to(self, person_id: int) -> list[SourceRecord]:
        """Every record (whatever its status) linked to this person."""
        ...

    def identifiers_of(self, person_id: int) -> list[Identifier]:
        """The identifiers of the person's active records: each local identifier and, where
        the identity is qualified, its INS (the master identifier is not included)."""
        ...

    def history(self, record_id: int) -> list[dict[str, object]]:
        """Every stored version of a record, oldest first."""
        ...

    def sample(self, limit: int) -> list[SourceRecord]:
        """Up to ``limit`` active records drawn at random (to train the matching model)."""
        ...

    def candidates(
        self, keys: Mapping[str, str], cap: int, exclude: int | None = None
    ) -> tuple[list[tuple[SourceRecord, int]], list[str]]:
        """Active records linked to an active person that share a blocking key value with
        ``keys`` (key name → value; the two name keys, ``name_year`` and ``used_name``, are
        each looked up in both name columns), with their person id; and the names of the keys
        whose block held more than ``cap`` records and was skipped."""
        ...


class PersonRepository(Protocol):
    def get(self, person_id: int) -> Person | None: ...

    def add(self, person: Person) -> None:
        """Store a new person: assigns ``id``."""
        ...

    def save(self, person: Person) -> None: ...

    def search(self, query: PersonQuery, offset: int, limit: int) -> tuple[list[int], int]:
        """Active persons with an active record matching the query (merged persons when
        ``query.active`` is False), by ascending id: (one page of ids, total count)."""
        ...


class LinkRepository(Protocol):
    def for_record(self, record_id: int) -> Link | None: ...

    def save(self, link: Link) -> None:
        """Insert or replace the link of ``link.record_id``."""
        ...

    def of_person(self, person_id: int) -> list[Link]: ...


class SeparationRepository(Protocol):
    """Pairs of records declared different people (A37, review "keep apart"): sticky."""

    def add(self, first: int, second: int, reason: str, decided_by: str) -> None: ...

    def remove(self, first: int, second: int) -> None: ...

    def exists_between(self, first_ids: Iterable[int], second_ids: Iterable[int]) -> bool:
        """True when some record of the first set was declared different from one of the second."""
        ...


class ReviewRepository(Protocol):
    def add(self, task: ReviewTask) -> None:
        """Store a task: assigns ``id``. An open task for the same record and person is
        not duplicated."""
        ...

    def get(self, task_id: int) -> ReviewTask | None: ...

    def save(self, task: ReviewTask) -> None: ...

    def list(self, status: ReviewStatus | None, offset: int,
             limit: int) -> tuple[builtins.list[ReviewTask], int]:
        """Tasks (oldest first), optionally of one status: (one page, total count)."""
        ...

    def open_for_record(self, record_id: int) -> builtins.list[ReviewTask]: ...


class ModelRepository(Protocol):
    """Versions of the matching model; one is in force."""

    def active(self) -> tuple[str, dict[str, object]] | None:
        """(version, model document) of the model in force, or None for the shipped one."""
        ...

    def add(self, version: str, document: dict[str, object], activate: bool) -> None: ...

    def versions(self) -> list[tuple[str, datetime, bool]]:
        """(version, created at, in force) of every stored model, newest first."""
        ...


class OutboxRepository(Protocol):
    """Domain events, written with the change that caused them and read back in order by the
    dispatcher. An event stays pending until it is marked processed in the transaction that
    ran its handlers: a process that dies in between leaves it pending, never lost."""

    def add(self, event: Event) -> None:
        """Write an event in the current transaction (at the latest when it commits)."""
        ...

    def claim(self, now: datetime, limit: int) -> list[StoredEvent]:
        """Pending events due by ``now``, oldest first, locked for this transaction (other
        transactions skip them)."""
        ...

    def mark_processed(self, event_ids: Iterable[int], when: datetime) -> None: ...

    def mark_failed(self, event_id: int, attempts: int, retry_at: datetime,
                    error: str) -> None:
        """Record a failed delivery; the event is due again at ``retry_at``."""
        ...

    def pending_count(self) -> int:
        """Events not processed yet (the dispatcher's backlog)."""
        ...

    def added(self) -> builtins.list[Event]:
        """The events added in this unit of work and not committed yet."""
        ...


class AuditLog(Protocol):
    """The access trail inside a unit of work: a change and its trail entry commit together
    (or neither does). Reads and refusals, which change nothing, use :class:`AuditTrail`."""

    def record(self, event: AuditEvent) -> None:
        """Write one entry with the unit of work's commit."""
        ...


@dataclass(frozen=True)
class PendingNotification:
    id: int
    consumer: str
    person_id: int
    attempts: int


class NotificationRepository(Protocol):
    def enqueue(self, consumer: str, person_id: int, due: datetime) -> None:
        """Ask for the person's identifiers to be sent to the consumer (at commit at the latest)."""
        ...

    def claim_due(self, consumer: str, now: datetime, limit: int) -> list[PendingNotification]:
        """Pending notifications of one consumer due by ``now``, oldest first, locked for this
        transaction (others skip them)."""
        ...

    def mark_sent(self, notification_id: int, when: datetime) -> None: ...

    def mark_failed(
        self, notification_id: int, attempts: int, retry_at: datetime, error: str
    ) -> None: ...

    def pending_count(self, consumer: str) -> int: ...


class JournalRepository(Protocol):
    def find(self, sender: str, control_id: str) -> JournalEntry | None:
        """The entry of an earlier message with the same sender and control ID."""
        ...

    def add(self, entry: JournalEntry) -> None:
        """Store an entry: assigns ``id``. Raises ConcurrencyError when another transaction
        journaled the same sender and control ID first."""
        ...

    def save(self, entry: JournalEntry) -> None: ...

    def get(self, entry_id: int) -> JournalEntry | None: ...

    def list(
        self, statuses: Iterable[JournalStatus] | None = None, limit: int = 100
    ) -> builtins.list[JournalEntry]:
        """The most recent entries first, optionally only those in ``statuses``."""
        ...


class UnitOfWork(Protocol):
    """One transaction over every repository."""

    # Read-only properties, so that an implementation may declare its own repository types.
    @property
    def records(self) -> RecordRepository: ...

    @property
    def persons(self) -> PersonRepository: ...

    @property
    def links(self) -> LinkRepository: ...

    @property
    def separations(self) -> SeparationRepository: ...

    @property
    def reviews(self) -> ReviewRepository: ...

    @property
    def models(self) -> ModelRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def notifications(self) -> NotificationRepository: ...

    @property
    def journal(self) -> JournalRepository: ...

    @property
    def audit(self) -> AuditLog: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None:
        """Roll back whatever was not committed."""
        ...

    def commit(self) -> None:
        """Raises ConcurrencyError when the database refused the transaction for a conflict."""
        ...

    def rollback(self) -> None: ...

    def lock(self, keys: Iterable[str]) -> None:
        """Serialize this transaction with others that lock any of the same keys, until the
        end of the transaction (advisory locks). Used before reading what a decision depends
        on, e.g. the INS a new record carries."""
        ...
