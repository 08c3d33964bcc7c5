"""In-memory implementations of the core's ports, for unit tests of the use cases.

The SQL adapter is the reference: ``tests/contract`` runs the same tests on these fakes and on
SQLite and PostgreSQL. So the fakes behave as a database would where a use case could tell
the difference: reads return copies and writes store copies (changing an object read is no
change until it is saved), instants come back in UTC and naive ones are refused, JSON values
come back as JSON gives them, unique keys are enforced (ConcurrencyError, as the SQL adapter
translates a unique violation), and what a unit of work did is seen by the next one only
after its commit.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, BinaryIO, TypeVar

from mpi.archive.model import (
    ArchivedPatient,
    DestructionProposal,
    LegalHold,
    Reassignment,
    RecordDates,
    Retention,
    RetentionRow,
    SeriesSummary,
    StoredInstance,
    StoredSeries,
    StoredStudy,
    StudyFacts,
    StudyFilter,
    StudySummary,
    Tombstone,
)
from mpi.archive.ports import CompressionCriteria, NewContent, PendingDeletion
from mpi.audit import AuditEvent
from mpi.errors import ConcurrencyError
from mpi.events import Event, StoredEvent
from mpi.matching.profile import blocking_keys, profile_of
from mpi.model import (
    Identifier,
    JournalEntry,
    JournalStatus,
    Link,
    Person,
    PersonStatus,
    ReviewStatus,
    ReviewTask,
    SourceRecord,
    person_id_of_master_id,
)
from mpi.normalize import search_key
from mpi.ports import PendingNotification, PersonQuery

_T = TypeVar("_T")


class FixedClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


def _utc(value: datetime) -> datetime:
    """An instant as the database keeps it: aware, in UTC. Raises ValueError for a naive one,
    which the SQL adapter refuses as well."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: instants must be timezone-aware")
    return value.astimezone(UTC)


def _json(value: _T) -> _T:
    """A value as it comes back from a JSON column (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))  # type: ignore[no-any-return]


def _stored(entity: _T) -> _T:
    """A copy of an entity as stored: no alias of the caller's object, instants in UTC."""
    stored = copy.deepcopy(entity)
    for field in dataclasses.fields(stored):  # type: ignore[arg-type]
        value = getattr(stored, field.name)
        if isinstance(value, datetime):
            setattr(stored, field.name, _utc(value))
    return stored


def _now() -> datetime:
    return datetime.now(UTC)


class _Store:
    """What the fake database holds between units of work."""

    def __init__(self) -> None:
        self.records: dict[int, SourceRecord] = {}
        self.history: dict[int, list[dict[str, object]]] = {}
        self.persons: dict[int, Person] = {}
        self.links: dict[int, Link] = {}
        self.separations: set[tuple[int, int]] = set()
        self.events: list[Event] = []
        self.outbox: list[dict[str, Any]] = []
        self.notifications: dict[int, dict[str, object]] = {}
        self.journal: dict[int, JournalEntry] = {}
        self.reviews: dict[int, ReviewTask] = {}
        # version -> (document, created at, in force)
        self.models: dict[str, tuple[dict[str, object], datetime, bool]] = {}
        self.archive_patients: dict[int, ArchivedPatient] = {}
        self.archive_studies: dict[int, StoredStudy] = {}
        self.archive_series: dict[int, StoredSeries] = {}
        self.archive_instances: dict[int, StoredInstance] = {}
        # earlier versions of instances, with when each was replaced
        self.archive_history: list[tuple[StoredInstance, datetime]] = []
        self.retention: dict[int, Retention] = {}  # by study id
        self.deletions: dict[int, PendingDeletion] = {}
        self.reassignments: list[Reassignment] = []
        self.compression_failures: dict[str, tuple[str, datetime]] = {}
        self.fixity_checked: dict[str, datetime] = {}
        self.holds: dict[int, LegalHold] = {}
        self.proposals: dict[int, DestructionProposal] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self.audit: list[AuditEvent] = []
        self.sequence = 0

    def next_id(self) -> int:
        self.sequence += 1
        return self.sequence


# Where each blocking key is looked up: the two name keys in both name columns, as in SQL.
_KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "name_year": ("name_year", "used_name"),
    "used_name": ("name_year", "used_name"),
    "date_sex": ("date_sex",),
    "given_family": ("given_family",),
    "place_date": ("place_date",),
}


class FakeRecords:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def get(self, record_id: int) -> SourceRecord | None:
        record = self.store.records.get(record_id)
        return None if record is None else copy.deepcopy(record)

    def by_identifier(self, identifier: Identifier) -> SourceRecord | None:
        return next((copy.deepcopy(r) for r in self.store.records.values()
                     if r.identifier == identifier), None)

    def add(self, record: SourceRecord) -> None:
        """Raises ValueError for a record already stored, ConcurrencyError when its identifier
        is stored already (the unique index of the SQL adapter)."""
        if record.id is not None:
            raise ValueError(f"record {record.id} is already stored")
        self._check_unique(record)
        record.id = self.store.next_id()
        record.version = 1
        self.store.records[record.id] = _stored(record)
        self.store.history[record.id] = [self._version(record)]

    def save(self, record: SourceRecord) -> None:
        """Raises ValueError for a record never stored, ConcurrencyError when the stored
        version is no longer the one that was read."""
        if record.id is None:
            raise ValueError("a record must be added before it is saved")
        stored = self.store.records.get(record.id)
        if stored is None or stored.version != record.version:
            raise ConcurrencyError(
                f"record {record.id} changed since version {record.version} was read")
        self._check_unique(record)
        record.version += 1
        self.store.records[record.id] = _stored(record)
        self.store.history[record.id].append(self._version(record))

    def _check_unique(self, record: SourceRecord) -> None:
        if any(other.identifier == record.identifier and other.id != record.id
               for other in self.store.records.values()):
            raise ConcurrencyError(f"{record.identifier} is stored already")

    @staticmethod
    def _version(record: SourceRecord) -> dict[str, object]:
        """A history entry, shaped as the SQL adapter's."""
        data = _json({
            "identifier": str(record.identifier),
            "status": record.status.value,
            "retired_into": record.retired_into,
            "ins": str(record.ins) if record.ins else None,
            "reliability": list(record.reliability),
            "demographics": record.demographics.as_dict(),
            "last_activity": record.last_activity.isoformat() if record.last_activity else None,
        })
        recorded_at = _utc(record.updated_at) if record.updated_at else _now()
        return {**data, "version": record.version, "recorded_at": recorded_at}

    def with_qualified_ins(self, ins: Identifier) -> list[SourceRecord]:
        return [copy.deepcopy(r) for _, r in sorted(self.store.records.items())
                if r.is_active and r.qualified_ins == ins]

    def retired_into(self, record_id: int) -> list[SourceRecord]:
        return [copy.deepcopy(r) for _, r in sorted(self.store.records.items())
                if r.retired_into == record_id]

    def linked_to(self, person_id: int) -> list[SourceRecord]:
        return [copy.deepcopy(self.store.records[record_id])
                for record_id, link in sorted(self.store.links.items())
                if link.person_id == person_id]

    def sample(self, limit: int) -> list[SourceRecord]:
        return [copy.deepcopy(r) for r in self.store.records.values() if r.is_active][:limit]

    def candidates(
        self, keys: Mapping[str, str], cap: int, exclude: int | None = None
    ) -> tuple[list[tuple[SourceRecord, int]], list[str]]:
        wanted_keys = {name: value for name, value in keys.items()
                       if name in _KEY_COLUMNS and value is not None}
        if not wanted_keys:
            return [], []
        # A block holds every record with the key, whatever its status: the SQL adapter
        # counts the index entries, and only then keeps the active records of active persons.
        per_key: dict[str, set[int]] = {}
        for record_id, record in self.store.records.items():
            own = blocking_keys(profile_of(record))
            for name, value in wanted_keys.items():
                if any(own.get(column) == value for column in _KEY_COLUMNS[name]):
                    per_key.setdefault(name, set()).add(record_id)
        oversized = sorted(name for name, ids in per_key.items() if len(ids) > cap)
        wanted = set().union(*(ids for name, ids in per_key.items() if name not in oversized))
        wanted.discard(exclude)
        found = []
        for record_id in sorted(wanted):
            record = self.store.records[record_id]
            link = self.store.links.get(record_id)
            person = self.store.persons.get(link.person_id) if link else None
            if record.is_active and person is not None and person.status is PersonStatus.ACTIVE:
                found.append((copy.deepcopy(record), link.person_id))  # type: ignore[union-attr]
        return found, oversized

    def identifiers_of(self, person_id: int) -> list[Identifier]:
        found = []
        for record in self.linked_to(person_id):
            if record.is_active:
                found.append(record.identifier)
                if record.qualified_ins is not None:
                    found.append(record.qualified_ins)
        return found

    def history(self, record_id: int) -> list[dict[str, object]]:
        return copy.deepcopy(self.store.history.get(record_id, []))


class FakePersons:
    def __init__(self, store: _Store, master: str) -> None:
        self.store = store
        self.master = master

    def get(self, person_id: int) -> Person | None:
        person = self.store.persons.get(person_id)
        return None if person is None else copy.deepcopy(person)

    def add(self, person: Person) -> None:
        """``created_at`` defaults to now. Raises ValueError for a person already stored."""
        if person.id is not None:
            raise ValueError(f"person {person.id} is already stored")
        person.created_at = person.created_at or _now()
        person.id = self.store.next_id()
        self.store.persons[person.id] = _stored(person)

    def save(self, person: Person) -> None:
        """Raises ValueError for a person never stored."""
        stored = self.store.persons.get(person.id) if person.id is not None else None
        if stored is None:
            raise ValueError(f"person {person.id} is not stored")
        # As in SQL, the status and the survivor change; the creation time does not.
        stored.status, stored.merged_into = person.status, person.merged_into

    def search(self, query: PersonQuery, offset: int, limit: int) -> tuple[list[int], int]:
        if query.is_empty():
            return [], 0
        if not query.active:
            if query.has_record_criteria():
                return [], 0
            ordered = sorted(
                p for p in set(query.person_ids or ())
                if p in self.store.persons
                and self.store.persons[p].status is PersonStatus.MERGED
            )
            return ordered[offset : offset + limit], len(ordered)
        criteria = _criteria(query, self.master)
        if not criteria and query.domain is None:
            return [], 0  # nothing searchable was left in the values (e.g. only separators)
        found = set()
        for record_id, link in self.store.links.items():
            record = self.store.records[record_id]
            person = self.store.persons[link.person_id]
            if (record.is_active and person.status is PersonStatus.ACTIVE
                    and all(holds(record, link.person_id) for holds in criteria)
                    and self._holds_domain(link.person_id, query.domain)):
                found.add(link.person_id)
        ordered = sorted(found)
        return ordered[offset : offset + limit], len(ordered)

    def _holds_domain(self, person_id: int, domain: str | None) -> bool:
        """Whether the person holds an identifier of the domain on one of its active records
        (every active person holds one in the master domain)."""
        if domain is None or domain == self.master:
            return True
        for link in self.store.links.values():
            record = self.store.records[link.record_id]
            if link.person_id == person_id and record.is_active:
                held = {record.identifier.authority}
                if record.qualified_ins is not None:
                    held.add(record.qualified_ins.authority)
                if domain in held:
                    return True
        return False


def _name_criterion(pattern: str | None, *fields: str):  # type: ignore[no-untyped-def]
    """Folded equality with a name of the record, a trailing ``*`` making it a prefix; None
    when nothing searchable is left in the pattern (then it is ignored, as in SQL)."""
    if not pattern:
        return None
    text = pattern.strip()
    prefix = text.endswith("*")
    wanted = search_key(text.rstrip("*"))
    if not wanted:
        return None

    def holds(record: SourceRecord, person_id: int) -> bool:
        keys = [search_key(value) for value in _fields(record, fields) if value]
        return any(key.startswith(wanted) if prefix else key == wanted for key in keys if key)

    return holds


def _text_criterion(pattern: str | None, field: str):  # type: ignore[no-untyped-def]
    """Equality with the value as stored, or a prefix with a trailing ``*``."""
    text = (pattern or "").strip()
    if not text.rstrip("*"):
        return None

    def holds(record: SourceRecord, person_id: int) -> bool:
        value = getattr(record.demographics, field)
        if value is None:
            return False
        return value.startswith(text.rstrip("*")) if text.endswith("*") else value == text

    return holds


def _exact_criterion(value: str | None, *fields: str):  # type: ignore[no-untyped-def]
    """A name exactly as written (case and accents included)."""
    if not value:
        return None
    return lambda record, person_id: bool(search_key(value)) and value in _fields(record, fields)


def _fields(record: SourceRecord, fields: tuple[str, ...]) -> list[str | None]:
    d = record.demographics
    values = {"birth": d.birth_family_name, "used": d.used_family_name,
              "given": d.given_names[0] if d.given_names else None, "city": d.city}
    return [values[field] for field in fields]


def _criteria(q: PersonQuery, master: str) -> list[Any]:
    """The record criteria of a query, each a predicate on (record, person id); the ones
    without anything searchable are left out, as the SQL adapter leaves them out."""
    optional = [
        _name_criterion(q.family, "birth", "used"),
        _name_criterion(q.given, "given"),
        _name_criterion(q.city, "city"),
        _exact_criterion(q.family_exact, "birth", "used"),
        _exact_criterion(q.given_exact, "given"),
        _text_criterion(q.postcode, "postcode"),
        _text_criterion(q.phone, "phone"),
    ]
    criteria = [criterion for criterion in optional if criterion is not None]
    if q.birth_date is not None:
        criteria.append(lambda r, p: r.demographics.birth_date == q.birth_date)
    if q.sex:
        criteria.append(lambda r, p: r.demographics.sex == q.sex)
    if q.identifier is not None:
        identifier = q.identifier

        def holds_identifier(record: SourceRecord, person_id: int) -> bool:
            if identifier in (record.identifier, record.qualified_ins):
                return True
            return (identifier.authority == master
                    and person_id_of_master_id(identifier.value) == person_id)

        criteria.append(holds_identifier)
    if q.person_ids is not None:
        person_ids = set(q.person_ids)
        criteria.append(lambda r, p: p in person_ids)
    return criteria


class FakeLinks:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def for_record(self, record_id: int) -> Link | None:
        link = self.store.links.get(record_id)
        return None if link is None else copy.deepcopy(link)

    def save(self, link: Link) -> None:
        """Insert or replace the link of ``link.record_id`` (``decided_at`` defaults to now)."""
        if link.decided_at is None:
            link.decided_at = _now()
        stored = _stored(link)
        stored.evidence = _json(link.evidence)
        self.store.links[link.record_id] = stored

    def of_person(self, person_id: int) -> list[Link]:
        return [copy.deepcopy(link) for _, link in sorted(self.store.links.items())
                if link.person_id == person_id]


class FakeSeparations:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def add(self, first: int, second: int, reason: str, decided_by: str) -> None:
        """Raises ValueError when both are the same record."""
        if first == second:
            raise ValueError(f"record {first} cannot be separated from itself")
        self.store.separations.add((min(first, second), max(first, second)))

    def remove(self, first: int, second: int) -> None:
        self.store.separations.discard((min(first, second), max(first, second)))

    def exists_between(self, first_ids: Iterable[int], second_ids: Iterable[int]) -> bool:
        seconds = set(second_ids)
        return any(
            (min(a, b), max(a, b)) in self.store.separations for a in first_ids for b in seconds
        )


class FakeReviews:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def add(self, task: ReviewTask) -> None:
        """An open task of the same kind for the same record and person is not duplicated
        (``task`` takes its id); ``created_at`` defaults to now."""
        for existing in self.open_for_record(task.record_id):
            if existing.person_id == task.person_id and existing.kind is task.kind:
                task.id = existing.id
                return
        task.created_at = task.created_at or _now()
        task.id = self.store.next_id()
        self._keep(task)

    def _keep(self, task: ReviewTask) -> None:
        stored = _stored(task)
        stored.evidence = _json(task.evidence)
        self.store.reviews[stored.id or 0] = stored

    def get(self, task_id: int) -> ReviewTask | None:
        task = self.store.reviews.get(task_id)
        return None if task is None else copy.deepcopy(task)

    def save(self, task: ReviewTask) -> None:
        """Raises ValueError for a task never stored."""
        if task.id is None:
            raise ValueError("a review task must be added before it is saved")
        if task.id not in self.store.reviews:
            raise ValueError(f"review task {task.id} is not stored")
        self._keep(task)

    def list(self, status, offset, limit):  # type: ignore[no-untyped-def]
        tasks = sorted((t for t in self.store.reviews.values()
                        if status is None or t.status is status),
                       key=lambda t: (t.created_at, t.id))
        return [copy.deepcopy(t) for t in tasks[offset:offset + limit]], len(tasks)

    def open_for_record(self, record_id: int) -> list[ReviewTask]:
        return [copy.deepcopy(t) for _, t in sorted(self.store.reviews.items())
                if t.record_id == record_id and t.status is ReviewStatus.OPEN]


class FakeModels:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def active(self):  # type: ignore[no-untyped-def]
        for version, (document, _, active) in self.store.models.items():
            if active:
                return version, copy.deepcopy(document)
        return None

    def add(self, version, document, activate):  # type: ignore[no-untyped-def]
        """Raises ConcurrencyError for a version stored already (its primary key in SQL)."""
        if version in self.store.models:
            raise ConcurrencyError(f"model version {version} is stored already")
        if activate:
            self.store.models = {v: (d, created, False)
                                 for v, (d, created, _) in self.store.models.items()}
        self.store.models[version] = (_json(document), _now(), activate)

    def versions(self):  # type: ignore[no-untyped-def]
        # Newest first; among equal creation times, the one added last.
        ordered = sorted(enumerate(self.store.models.items()),
                         key=lambda item: (item[1][1][1], item[0]), reverse=True)
        return [(version, created, active)
                for _, (version, (_, created, active)) in ordered]


class FakeOutbox:
    """Events of this unit of work wait in ``pending`` until commit, which appends them to
    the store's events and outbox rows."""

    def __init__(self, store: _Store, pending: list[Event]) -> None:
        self.store = store
        self.pending = pending

    def add(self, event: Event) -> None:
        self.pending.append(event)

    def added(self) -> list[Event]:
        return list(self.pending)

    def claim(self, now: datetime, limit: int) -> list[StoredEvent]:
        now = _utc(now)
        rows = [
            StoredEvent(row["id"], row["event"], row["occurred_at"], row["attempts"])
            for row in sorted(self.store.outbox, key=lambda row: row["id"])
            if row["processed_at"] is None and (row["due_at"] is None or row["due_at"] <= now)
        ]
        return rows[:limit]

    def _rows(self, event_ids: Iterable[int]) -> list[dict[str, Any]]:
        wanted = set(event_ids)
        return [row for row in self.store.outbox if row["id"] in wanted]

    def mark_processed(self, event_ids: Iterable[int], when: datetime) -> None:
        for row in self._rows(event_ids):
            row.update(processed_at=_utc(when), last_error=None)

    def mark_failed(self, event_id: int, attempts: int, retry_at: datetime, error: str) -> None:
        for row in self._rows([event_id]):
            row.update(attempts=attempts, due_at=_utc(retry_at), last_error=error[:2000])

    def pending_count(self) -> int:
        return sum(1 for row in self.store.outbox if row["processed_at"] is None)


class FakeNotifications:
    """Notifications asked for in this unit of work wait until it reads them back or commits,
    as in SQL: at most one pending notification per consumer and person, due at the earliest
    time asked for; one already pending in the store is joined, not changed."""

    def __init__(self, store: _Store) -> None:
        self.store = store
        self._due: dict[tuple[str, int], datetime] = {}

    def enqueue(self, consumer: str, person_id: int, due: datetime) -> None:
        key = (consumer, person_id)
        due = _utc(due)
        self._due[key] = min(due, self._due.get(key, due))

    def flush(self) -> None:
        pending = {(row["consumer"], row["person_id"]) for row in self.store.notifications.values()
                   if row["status"] == "pending"}
        for (consumer, person_id), due in sorted(self._due.items()):
            if (consumer, person_id) not in pending:
                self.store.notifications[self.store.next_id()] = {
                    "consumer": consumer, "person_id": person_id, "status": "pending",
                    "attempts": 0, "due_at": due, "last_error": None, "sent_at": None,
                }
        self._due.clear()

    def discard(self) -> None:
        self._due.clear()

    def claim_due(self, consumer: str, now: datetime, limit: int) -> list[PendingNotification]:
        self.flush()
        now = _utc(now)
        due = sorted(
            ((row["due_at"], nid, row) for nid, row in self.store.notifications.items()
             if row["consumer"] == consumer and row["status"] == "pending"
             and row["due_at"] <= now),  # type: ignore[operator]
            key=lambda item: (item[0], item[1]),
        )
        return [
            PendingNotification(nid, consumer, int(row["person_id"]), int(row["attempts"]))  # type: ignore[call-overload]
            for _, nid, row in due[:limit]
        ]

    def mark_sent(self, notification_id: int, when: datetime) -> None:
        row = self.store.notifications.get(notification_id)
        if row is not None:
            row.update(status="sent", sent_at=_utc(when))

    def mark_failed(self, notification_id: int, attempts: int, retry_at: datetime, error: str) -> None:
        row = self.store.notifications.get(notification_id)
        if row is not None:
            row.update(attempts=attempts, due_at=_utc(retry_at), last_error=error)

    def pending_count(self, consumer: str) -> int:
        self.flush()
        return sum(
            1 for row in self.store.notifications.values()
            if row["consumer"] == consumer and row["status"] == "pending"
        )


class FakeJournal:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def find(self, sender: str | None, control_id: str | None) -> JournalEntry | None:
        if sender is None or control_id is None:
            return None  # as NULL in SQL: such messages cannot be recognized again
        return next(
            (copy.deepcopy(e) for e in self.store.journal.values()
             if e.sender == sender and e.control_id == control_id),
            None,
        )

    def add(self, entry: JournalEntry) -> None:
        """Raises ValueError for an entry already stored, ConcurrencyError when the same
        sender and control ID were journaled first (the unit of work stays usable)."""
        if entry.id is not None:
            raise ValueError(f"journal entry {entry.id} is already stored")
        if self.find(entry.sender, entry.control_id) is not None:
            raise ConcurrencyError(
                f"message {entry.control_id} from {entry.sender} was journaled already")
        entry.id = self.store.next_id()
        self.store.journal[entry.id] = _stored(entry)

    def save(self, entry: JournalEntry) -> None:
        """Raises ValueError for an entry never stored."""
        if entry.id is None or entry.id not in self.store.journal:
            raise ValueError(f"journal entry {entry.id} is not stored")
        self.store.journal[entry.id] = _stored(entry)

    def get(self, entry_id: int) -> JournalEntry | None:
        entry = self.store.journal.get(entry_id)
        return None if entry is None else copy.deepcopy(entry)

    def list(self, statuses: Iterable[JournalStatus] | None = None, limit: int = 100) -> list[JournalEntry]:
        wanted = {JournalStatus(s) for s in statuses} if statuses is not None else None
        entries = [e for e in self.store.journal.values() if wanted is None or e.status in wanted]
        return [copy.deepcopy(e)
                for e in sorted(entries, key=lambda e: e.id or 0, reverse=True)[:limit]]


class FakeArchiveRepository:
    """The archive's index. As in SQL, an instance is stored without the study, series and
    record it is read with: those come from its series at read time."""

    def __init__(self, store: _Store) -> None:
        self.store = store

    # -- patients as received ------------------------------------------------------------

    def patient(self, identifier: Identifier) -> ArchivedPatient | None:
        return next((copy.deepcopy(p) for p in self.store.archive_patients.values()
                     if (p.authority, p.patient_id) == (identifier.authority, identifier.value)),
                    None)

    def add_patient(self, patient: ArchivedPatient) -> None:
        """Raises ConcurrencyError when the patient is stored already."""
        if self.patient(Identifier(patient.authority, patient.patient_id)) is not None:
            raise ConcurrencyError(f"{patient.authority}|{patient.patient_id} is stored already")
        patient.id = self.store.next_id()
        self.store.archive_patients[patient.id] = _stored(patient)

    def save_patient(self, patient: ArchivedPatient) -> None:
        if patient.id in self.store.archive_patients:
            self.store.archive_patients[patient.id] = _stored(patient)

    # -- studies and series --------------------------------------------------------------

    def study(self, study_uid: str) -> StoredStudy | None:
        return next((copy.deepcopy(s) for s in self.store.archive_studies.values()
                     if s.study_instance_uid == study_uid), None)

    def add_study(self, study: StoredStudy) -> None:
        """Raises ConcurrencyError when the study is stored already."""
        if self.study(study.study_instance_uid) is not None:
            raise ConcurrencyError(f"study {study.study_instance_uid} is stored already")
        study.id = self.store.next_id()
        self.store.archive_studies[study.id] = _stored(study)

    def save_study(self, study: StoredStudy) -> None:
        if study.id in self.store.archive_studies:
            self.store.archive_studies[study.id] = _stored(study)

    def series(self, series_uid: str) -> StoredSeries | None:
        return next((copy.deepcopy(s) for s in self.store.archive_series.values()
                     if s.series_instance_uid == series_uid), None)

    def add_series(self, series: StoredSeries) -> None:
        """Raises ConcurrencyError when the series is stored already."""
        if self.series(series.series_instance_uid) is not None:
            raise ConcurrencyError(f"series {series.series_instance_uid} is stored already")
        series.id = self.store.next_id()
        self.store.archive_series[series.id] = _stored(series)

    # -- instances -----------------------------------------------------------------------

    def instance(self, sop_uid: str) -> StoredInstance | None:
        return next((self._read(i) for i in self.store.archive_instances.values()
                     if i.sop_instance_uid == sop_uid), None)

    def _read(self, instance: StoredInstance) -> StoredInstance:
        """The instance with the study, series and record it belongs to."""
        series = self.store.archive_series[instance.series_id]
        study = self.store.archive_studies[series.study_id]
        patient = self.store.archive_patients[study.patient_id]
        return dataclasses.replace(
            copy.deepcopy(instance), study_instance_uid=study.study_instance_uid,
            series_instance_uid=series.series_instance_uid, record_id=patient.record_id)

    def add_instance(self, instance: StoredInstance) -> None:
        """Raises ConcurrencyError when the instance is stored already."""
        if self.instance(instance.sop_instance_uid) is not None:
            raise ConcurrencyError(f"instance {instance.sop_instance_uid} is stored already")
        instance.id = self.store.next_id()
        self.store.archive_instances[instance.id] = _bare(instance)

    def replace_instance(self, previous: StoredInstance, current: StoredInstance,
                         when: datetime) -> None:
        """Raises ConcurrencyError when that version of the instance is in its history
        already (another transaction replaced it first)."""
        if any(old.sop_instance_uid == previous.sop_instance_uid
               and old.version == previous.version for old, _ in self.store.archive_history):
            raise ConcurrencyError(
                f"version {previous.version} of {previous.sop_instance_uid} was replaced already")
        old = _bare(previous)
        old.id = self.store.next_id()  # a history entry has an id of its own, as its SQL row
        self.store.archive_history.append((old, _utc(when)))
        current.id = previous.id
        fresh = _bare(current)
        fresh.original_sha256 = fresh.pixel_sha256 = fresh.fixity_failed_at = None
        self.store.archive_instances[previous.id or 0] = fresh
        self.store.compression_failures.pop(current.sop_instance_uid, None)
        self.store.fixity_checked.pop(current.sop_instance_uid, None)

    def instance_history(self, sop_uid: str) -> list[StoredInstance]:
        return [copy.deepcopy(old) for old, _ in sorted(
            (entry for entry in self.store.archive_history
             if entry[0].sop_instance_uid == sop_uid), key=lambda entry: entry[0].version)]

    def has_content(self, sha256: str) -> bool:
        return any(i.sha256 == sha256 for i in self.store.archive_instances.values())

    def instances(self, study_uid: str | None = None, series_uid: str | None = None,
                  sop_uids: Iterable[str] = (), person_id: int | None = None,
                  limit: int = 100_000) -> list[StoredInstance]:
        wanted = set(sop_uids)
        found = []
        for instance in self.store.archive_instances.values():
            read = self._read(instance)
            series = self.store.archive_series[instance.series_id]
            if study_uid is not None and read.study_instance_uid != study_uid:
                continue
            if series_uid is not None and read.series_instance_uid != series_uid:
                continue
            if wanted and read.sop_instance_uid not in wanted:
                continue
            if person_id is not None:
                link = self.store.links.get(read.record_id or 0)
                if link is None or link.person_id != person_id:
                    continue
            found.append((
                (read.study_instance_uid, *_nulls_last(series.series_number),
                 read.series_instance_uid, *_nulls_last(read.instance_number),
                 read.sop_instance_uid),
                read,
            ))
        return [read for _, read in sorted(found, key=lambda item: item[0])][:limit]

    # -- queries -------------------------------------------------------------------------

    def find_studies(self, criteria: StudyFilter) -> list[StudySummary]:
        found = []
        for study in self.store.archive_studies.values():
            patient = self.store.archive_patients[study.patient_id]
            link = self.store.links.get(patient.record_id)
            person_id = link.person_id if link is not None else None
            series = self._series_of(study.id or 0)
            if criteria.person_ids is not None and person_id not in criteria.person_ids:
                continue
            if criteria.study_uids and study.study_instance_uid not in criteria.study_uids:
                continue
            if criteria.accession_number and study.accession_number != criteria.accession_number:
                continue
            # A study without a date matches no date criterion (NULL in SQL).
            if criteria.date_from is not None and (
                    study.study_date is None or study.study_date < criteria.date_from):
                continue
            if criteria.date_to is not None and (
                    study.study_date is None or study.study_date > criteria.date_to):
                continue
            if criteria.modality and criteria.modality not in {s.modality for s in series}:
                continue
            found.append(StudySummary(
                study_instance_uid=study.study_instance_uid, record_id=patient.record_id,
                received_as=Identifier(patient.authority, patient.patient_id),
                study_date=study.study_date, study_time=study.study_time,
                accession_number=study.accession_number, study_id=study.study_id,
                description=study.description, first_received_at=study.first_received_at,
                last_received_at=study.last_received_at, series=tuple(series),
                person_id=person_id,
            ))
        # Newest first, the latest stored first among studies of one date, undated ones last.
        ids = {s.study_instance_uid: i for i, s in self.store.archive_studies.items()}
        found.sort(key=lambda s: (
            s.study_date is None, -(s.study_date.toordinal() if s.study_date else 0),
            -ids[s.study_instance_uid]))
        return found[:criteria.limit]

    def _series_of(self, study_id: int) -> list[SeriesSummary]:
        series = sorted(
            (s for s in self.store.archive_series.values() if s.study_id == study_id),
            key=lambda s: (*_nulls_last(s.series_number), s.series_instance_uid))
        return [
            SeriesSummary(s.series_instance_uid, s.modality, s.series_number, s.description,
                          sum(1 for i in self.store.archive_instances.values()
                              if i.series_id == s.id))
            for s in series
        ]


    # -- retention -----------------------------------------------------------------------

    def _sizes(self, study_id: int) -> tuple[int, int]:
        series = {s.id for s in self.store.archive_series.values() if s.study_id == study_id}
        current = [i for i in self.store.archive_instances.values() if i.series_id in series]
        return sum(i.size for i in current), len(current)

    def retention_facts(self, record_ids: Iterable[int]) -> list[StudyFacts]:
        wanted = set(record_ids)
        found = []
        for study in self.store.archive_studies.values():
            patient = self.store.archive_patients[study.patient_id]
            if patient.record_id not in wanted:
                continue
            size, count = self._sizes(study.id or 0)
            assert study.first_received_at and study.last_received_at
            found.append(StudyFacts(study.id or 0, study.study_instance_uid,
                                    patient.record_id, patient.authority, patient.patient_id,
                                    patient.birth_date, study.study_date,
                                    study.first_received_at, study.last_received_at, size,
                                    count))
        return sorted(found, key=lambda f: f.study_id)

    def retention_concerned(self, record_ids: Iterable[int]) -> set[int]:
        archived = {p.record_id for p in self.store.archive_patients.values()}
        retired_into = {r.retired_into for r in self.store.records.values()}
        return {i for i in set(record_ids) if i in self.store.records and (
            self.store.records[i].retired_into is not None or i in archived
            or i in retired_into)}

    def retention_dates(self, record_ids: Iterable[int]) -> list[RecordDates]:
        found = []
        for record_id in sorted(set(record_ids)):
            record = self.store.records.get(record_id)
            if record is None:
                continue
            link = self.store.links.get(record_id)
            person = self.store.persons.get(link.person_id) if link else None
            deaths = [r.demographics.death_date for rid, other in self.store.links.items()
                      if link and other.person_id == link.person_id
                      for r in [self.store.records[rid]] if r.is_active
                      and r.demographics.death_date]
            found.append(RecordDates(
                record_id, record.retired_into,
                any(r.retired_into == record_id for r in self.store.records.values()),
                record.last_activity, record.demographics.birth_date,
                record.demographics.death_date,
                None if person is None else person.status is PersonStatus.ACTIVE,
                min(deaths) if deaths else None))
        return found

    def archived_record_ids(self, after: int, limit: int) -> list[int]:
        return sorted({p.record_id for p in self.store.archive_patients.values()
                       if p.record_id > after})[:limit]

    def save_retention(self, rows: Iterable[Retention]) -> None:
        for row in rows:
            self.store.retention[row.study_id] = dataclasses.replace(
                row, computed_at=_utc(row.computed_at))

    def retention_report(self, establishment: str | None = None,
                         expiring_by: date | None = None, study_uids: Iterable[str] = (),
                         limit: int = 1_000_000) -> list[RetentionRow]:
        wanted = set(study_uids)
        rows = []
        for study in self.store.archive_studies.values():
            patient = self.store.archive_patients[study.patient_id]
            retention = self.store.retention.get(study.id or 0)
            if establishment is not None and patient.authority != establishment:
                continue
            if expiring_by is not None and (retention is None
                                            or retention.expires_on > expiring_by):
                continue
            if wanted and study.study_instance_uid not in wanted:
                continue
            link = self.store.links.get(patient.record_id)
            size, count = self._sizes(study.id or 0)
            rows.append(RetentionRow(
                study.study_instance_uid, patient.authority, patient.patient_id,
                retention.expires_on if retention else None,
                retention.basis if retention else None,
                retention.last_visit if retention else None, study.study_date, size, count,
                link.person_id if link else None))
        rows.sort(key=lambda r: (r.expires_on is None, r.expires_on or date.min,
                                 r.study_instance_uid))
        return rows[:limit]

    def uncomputed_record_ids(self, establishment: str | None = None) -> list[int]:
        return sorted({
            self.store.archive_patients[s.patient_id].record_id
            for s in self.store.archive_studies.values()
            if (s.id or 0) not in self.store.retention and (
                establishment is None
                or self.store.archive_patients[s.patient_id].authority == establishment)})

    # -- destruction ---------------------------------------------------------------------

    def _study_series(self, study_uid: str) -> dict[int, StoredSeries]:
        study = self.study(study_uid)
        if study is None:
            return {}
        return {s.id or 0: s for s in self.store.archive_series.values()
                if s.study_id == study.id}

    def instance_files(self, study_uid: str) -> list[StoredInstance]:
        series = self._study_series(study_uid)
        files = self.instances(study_uid=study_uid)
        for old, _ in self.store.archive_history:
            if old.series_id in series:
                files.append(dataclasses.replace(
                    copy.deepcopy(old),
                    series_instance_uid=series[old.series_id].series_instance_uid))
        return sorted(files, key=lambda f: (f.sop_instance_uid, f.version))

    def delete_study(self, study_uid: str) -> None:
        study = self.study(study_uid)
        if study is None:
            return
        series = self._study_series(study_uid)
        self.store.archive_history = [(old, when) for old, when in self.store.archive_history
                                      if old.series_id not in series]
        for key, instance in list(self.store.archive_instances.items()):
            if instance.series_id in series:
                del self.store.archive_instances[key]
        for key in series:
            del self.store.archive_series[key]
        self.store.retention.pop(study.id or 0, None)
        self.store.reassignments = [r for r in self.store.reassignments
                                    if r.study_instance_uid != study_uid]
        del self.store.archive_studies[study.id or 0]

    def queue_blob_deletions(self, keys: Iterable[str], reason: str, when: datetime) -> None:
        _utc(when)
        for key in keys:
            number = self.store.next_id()
            self.store.deletions[number] = PendingDeletion(number, key, reason)

    def pending_deletions(self, limit: int) -> list[PendingDeletion]:
        return [self.store.deletions[k] for k in sorted(self.store.deletions)][:limit]

    def forget_deletions(self, ids: Iterable[int]) -> None:
        for number in ids:
            self.store.deletions.pop(number, None)

    def blob_in_use(self, key: str) -> bool:
        return (any(i.blob_key == key for i in self.store.archive_instances.values())
                or any(old.blob_key == key for old, _ in self.store.archive_history))

    # -- compression and fixity ----------------------------------------------------------

    def _due(self, criteria: CompressionCriteria) -> list[StoredInstance]:
        found = []
        for instance in self.store.archive_instances.values():
            series = self.store.archive_series[instance.series_id]
            if (instance.received_at >= criteria.received_before
                    or instance.transfer_syntax_uid not in criteria.from_syntaxes
                    or instance.sop_instance_uid in self.store.compression_failures
                    or (criteria.modalities and series.modality not in criteria.modalities)
                    or (criteria.sop_classes
                        and instance.sop_class_uid not in criteria.sop_classes)):
                continue
            found.append(self._read(instance))
        return sorted(found, key=lambda i: (i.received_at, i.id or 0))

    def compression_candidates(self, criteria: CompressionCriteria,
                               limit: int) -> list[StoredInstance]:
        return self._due(criteria)[:limit]

    def compression_backlog(self, criteria: CompressionCriteria) -> tuple[int, int]:
        due = self._due(criteria)
        return len(due), sum(i.size for i in due)

    def switch_content(self, sop_uid: str, expected_sha256: str, new: NewContent) -> bool:
        for key, instance in self.store.archive_instances.items():
            if instance.sop_instance_uid == sop_uid and instance.sha256 == expected_sha256:
                self.store.archive_instances[key] = dataclasses.replace(
                    instance, blob_key=new.blob_key,
                    transfer_syntax_uid=new.transfer_syntax_uid, size=new.size,
                    sha256=new.sha256, original_sha256=new.original_sha256,
                    pixel_sha256=new.pixel_sha256, fixity_failed_at=None)
                self.store.fixity_checked.pop(sop_uid, None)
                return True
        return False

    def mark_compression_failed(self, sop_uid: str, reason: str, when: datetime) -> None:
        if self.instance(sop_uid) is not None:
            self.store.compression_failures[sop_uid] = (reason[:2000], _utc(when))

    def compression_failures(self) -> list[tuple[str, str, datetime]]:
        return [(uid, reason, when) for uid, (reason, when)
                in sorted(self.store.compression_failures.items())]

    def fixity_due(self, limit: int) -> list[StoredInstance]:
        never = datetime.min.replace(tzinfo=UTC)
        found = sorted(self.store.archive_instances.values(), key=lambda i: (
            i.sop_instance_uid in self.store.fixity_checked,
            self.store.fixity_checked.get(i.sop_instance_uid, never), i.id or 0))
        return [self._read(i) for i in found[:limit]]

    def record_fixity(self, checked: Iterable[str], failed: Iterable[str],
                      when: datetime) -> None:
        bad = set(failed)
        for key, instance in self.store.archive_instances.items():
            uid = instance.sop_instance_uid
            if uid in bad or uid in set(checked):
                self.store.fixity_checked[uid] = _utc(when)
                self.store.archive_instances[key] = dataclasses.replace(
                    instance, fixity_failed_at=_utc(when) if uid in bad else None)

    def fixity_failures(self) -> list[StoredInstance]:
        return sorted((self._read(i) for i in self.store.archive_instances.values()
                       if i.fixity_failed_at is not None), key=lambda i: i.sop_instance_uid)

    # -- corrections ---------------------------------------------------------------------

    def move_study(self, study_uid: str, to_patient_id: int) -> None:
        study = self.study(study_uid)
        if study is not None:
            study.patient_id = to_patient_id
            self.store.archive_studies[study.id or 0] = study

    def add_reassignment(self, reassignment: Reassignment) -> None:
        stored = dataclasses.replace(reassignment, at=_utc(reassignment.at),
                                     id=self.store.next_id())
        self.store.reassignments.append(stored)

    def reassignments(self, study_uid: str) -> list[Reassignment]:
        return [copy.deepcopy(r) for r in self.store.reassignments
                if r.study_instance_uid == study_uid]


class FakeLifecycleRepository:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def add_hold(self, hold: LegalHold) -> None:
        hold.id = self.store.next_id()
        self.store.holds[hold.id] = _stored(hold)

    def hold(self, hold_id: int) -> LegalHold | None:
        return copy.deepcopy(self.store.holds.get(hold_id))

    def save_hold(self, hold: LegalHold) -> None:
        if hold.id in self.store.holds:
            self.store.holds[hold.id] = _stored(hold)

    def holds(self, active_only: bool = True) -> list[LegalHold]:
        return [copy.deepcopy(h) for _, h in sorted(self.store.holds.items())
                if h.active or not active_only]

    def add_proposal(self, proposal: DestructionProposal) -> None:
        proposal.id = self.store.next_id()
        self.save_proposal(proposal)

    def proposal(self, proposal_id: int) -> DestructionProposal | None:
        return copy.deepcopy(self.store.proposals.get(proposal_id))

    def save_proposal(self, proposal: DestructionProposal) -> None:
        stored = _stored(proposal)
        stored.items.sort(key=lambda i: i.study_instance_uid)
        stored.approvals = [dataclasses.replace(a, approved_at=_utc(a.approved_at))
                            for a in stored.approvals]
        self.store.proposals[proposal.id or 0] = stored

    def proposals(self, establishment: str | None = None) -> list[DestructionProposal]:
        return [dataclasses.replace(copy.deepcopy(p), items=[])
                for _, p in sorted(self.store.proposals.items(), reverse=True)
                if establishment is None or p.establishment == establishment]

    def add_tombstone(self, tombstone: Tombstone) -> None:
        if tombstone.study_instance_uid in self.store.tombstones:
            raise ConcurrencyError(f"study {tombstone.study_instance_uid} has a tombstone")
        self.store.tombstones[tombstone.study_instance_uid] = dataclasses.replace(
            tombstone, first_received_at=_utc(tombstone.first_received_at),
            last_received_at=_utc(tombstone.last_received_at),
            destroyed_at=_utc(tombstone.destroyed_at), files=tuple(_json(list(tombstone.files))),
            decision=_json(tombstone.decision), id=self.store.next_id())

    def tombstone(self, study_uid: str) -> Tombstone | None:
        return copy.deepcopy(self.store.tombstones.get(study_uid))

    def tombstones(self, establishment: str | None = None,
                   limit: int = 100_000) -> list[Tombstone]:
        found = sorted((t for t in self.store.tombstones.values()
                        if establishment is None or t.establishment == establishment),
                       key=lambda t: (t.destroyed_at, t.id or 0), reverse=True)
        return [copy.deepcopy(t) for t in found[:limit]]


def _bare(instance: StoredInstance) -> StoredInstance:
    """An instance as stored: without what reads join to it."""
    return dataclasses.replace(_stored(instance), study_instance_uid=None,
                               series_instance_uid=None, record_id=None)


def _nulls_last(number: int | None) -> tuple[bool, int]:
    return (number is None, number or 0)


class FakeBlobStore:
    """Blobs in memory (implements :class:`mpi.archive.ports.BlobStore`). A put stores the
    whole bytes in one step, so a blob is complete or absent, as the filesystem store's
    rename makes it. Not transactional, like the filesystem: a rollback keeps the blobs."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.blobs[key] = bytes(data)

    def open(self, key: str) -> BinaryIO:
        """Raises FileNotFoundError for an unknown key."""
        try:
            return io.BytesIO(self.blobs[key])
        except KeyError:
            raise FileNotFoundError(f"no blob {key!r}") from None

    def exists(self, key: str) -> bool:
        return key in self.blobs

    def delete(self, key: str) -> None:
        self.blobs.pop(key, None)


class FakeAuditLog:
    """Trail entries of a unit of work, kept with its commit."""

    def __init__(self) -> None:
        self.pending: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.pending.append(event)


class FakeUnitOfWork:
    """A unit of work over an in-memory store. Changes are made on a deep copy of the store and
    become visible to the next unit of work only on commit, as with a database; a rollback
    forgets them and the unit of work goes on from the committed state."""

    def __init__(self, store: _Store | None = None, master: str = "GCS") -> None:
        self.committed_store = store or _Store()
        self.master = master
        self.committed = False
        self.locked: list[str] = []

    def __enter__(self) -> FakeUnitOfWork:
        self.store = copy.deepcopy(self.committed_store)
        self._pending_events: list[Event] = []
        self.records = FakeRecords(self.store)
        self.persons = FakePersons(self.store, self.master)
        self.links = FakeLinks(self.store)
        self.separations = FakeSeparations(self.store)
        self.reviews = FakeReviews(self.store)
        self.models = FakeModels(self.store)
        self.outbox = FakeOutbox(self.store, self._pending_events)
        self.notifications = FakeNotifications(self.store)
        self.journal = FakeJournal(self.store)
        self.archive = FakeArchiveRepository(self.store)
        self.lifecycle = FakeLifecycleRepository(self.store)
        self.audit = FakeAuditLog()
        self.committed = False
        return self

    def __exit__(self, *exc_info: object) -> None:
        # What was not committed stays in the working copy, which nobody reads again.
        self._discard_buffers()

    def commit(self) -> None:
        self.notifications.flush()
        for event in self._pending_events:
            self.store.events.append(event)
            self.store.outbox.append({
                "id": self.store.next_id(), "event": event, "occurred_at": _now(),
                "processed_at": None, "attempts": 0, "due_at": None, "last_error": None,
            })
        self._pending_events.clear()
        self.store.audit.extend(self.audit.pending)
        self.audit.pending.clear()
        # Hand the committed state over in place so that later units of work see it.
        self.committed_store.__dict__.update(copy.deepcopy(self.store).__dict__)
        self.committed = True

    def rollback(self) -> None:
        self._discard_buffers()
        # In place: the repositories keep working on the same store object.
        self.store.__dict__.update(copy.deepcopy(self.committed_store).__dict__)

    def _discard_buffers(self) -> None:
        self._pending_events.clear()
        self.notifications.discard()
        if hasattr(self, "audit"):
            self.audit.pending.clear()

    def lock(self, keys: Iterable[str]) -> None:
        self.locked.extend(keys)


def fake_uow_factory(master: str = "GCS"):  # type: ignore[no-untyped-def]
    """A factory whose units of work share one in-memory store."""
    store = _Store()

    def factory(read_only: bool = False) -> FakeUnitOfWork:
        return FakeUnitOfWork(store, master)

    factory.store = store  # type: ignore[attr-defined]
    return factory


def replace(record: SourceRecord, **changes: object) -> SourceRecord:
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]
