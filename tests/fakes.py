"""In-memory implementations of the core's ports, for unit tests of the use cases."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

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


class FixedClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


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
        self.models: dict[str, tuple[dict[str, object], bool]] = {}
        self.sequence = 0

    def next_id(self) -> int:
        self.sequence += 1
        return self.sequence


class FakeRecords:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def get(self, record_id: int) -> SourceRecord | None:
        return self.store.records.get(record_id)

    def by_identifier(self, identifier: Identifier) -> SourceRecord | None:
        return next((r for r in self.store.records.values() if r.identifier == identifier), None)

    def add(self, record: SourceRecord) -> None:
        record.id = self.store.next_id()
        record.version = 1
        self.store.records[record.id] = record
        self.store.history[record.id] = [self._snapshot(record)]

    def save(self, record: SourceRecord) -> None:
        assert record.id in self.store.records
        record.version += 1
        self.store.history[record.id].append(self._snapshot(record))

    @staticmethod
    def _snapshot(record: SourceRecord) -> dict[str, object]:
        return {
            "version": record.version,
            "status": record.status.value,
            "identifier": str(record.identifier),
            "demographics": record.demographics.as_dict(),
        }

    def with_qualified_ins(self, ins: Identifier) -> list[SourceRecord]:
        return [r for r in self.store.records.values() if r.is_active and r.qualified_ins == ins]

    def retired_into(self, record_id: int) -> list[SourceRecord]:
        return [r for r in self.store.records.values() if r.retired_into == record_id]

    def linked_to(self, person_id: int) -> list[SourceRecord]:
        return [
            self.store.records[link.record_id]
            for link in self.store.links.values()
            if link.person_id == person_id
        ]

    def sample(self, limit: int) -> list[SourceRecord]:
        return [r for r in self.store.records.values() if r.is_active][:limit]

    def candidates(self, keys, cap, exclude=None):  # type: ignore[no-untyped-def]
        columns = {"name_year": ("name_year", "used_name"), "used_name": ("name_year", "used_name"),
                   "date_sex": ("date_sex",), "given_family": ("given_family",),
                   "place_date": ("place_date",)}
        per_key: dict[str, set[int]] = {}
        for record in self.store.records.values():
            if not record.is_active or record.id is None:
                continue
            own = blocking_keys(profile_of(record))
            for name, value in keys.items():
                if any(own.get(column) == value for column in columns[name]):
                    per_key.setdefault(name, set()).add(record.id)
        oversized = sorted(name for name, ids in per_key.items() if len(ids) > cap)
        wanted = set().union(*(ids for name, ids in per_key.items() if name not in oversized))
        wanted.discard(exclude)
        found = []
        for record_id in sorted(wanted):
            link = self.store.links.get(record_id)
            if link and self.store.persons[link.person_id].status is PersonStatus.ACTIVE:
                found.append((self.store.records[record_id], link.person_id))
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
        return list(self.store.history.get(record_id, []))


class FakePersons:
    def __init__(self, store: _Store, master: str) -> None:
        self.store = store
        self.master = master

    def get(self, person_id: int) -> Person | None:
        return self.store.persons.get(person_id)

    def add(self, person: Person) -> None:
        person.id = self.store.next_id()
        self.store.persons[person.id] = person

    def save(self, person: Person) -> None:
        assert person.id in self.store.persons

    def search(self, query: PersonQuery, offset: int, limit: int) -> tuple[list[int], int]:
        if query.is_empty():
            return [], 0
        if not query.active:
            if query.has_record_criteria():
                return [], 0
            ordered = sorted(
                p for p in (query.person_ids or ())
                if p in self.store.persons
                and self.store.persons[p].status is PersonStatus.MERGED
            )
            return ordered[offset : offset + limit], len(ordered)
        found = set()
        for link in self.store.links.values():
            record = self.store.records[link.record_id]
            person = self.store.persons[link.person_id]
            if record.is_active and person.status is PersonStatus.ACTIVE:
                if _matches(record, link.person_id, query, self.master) and self._holds_domain(
                    link.person_id, query.domain
                ):
                    found.add(link.person_id)
        ordered = sorted(found)
        return ordered[offset : offset + limit], len(ordered)

    def _holds_domain(self, person_id: int, domain: str | None) -> bool:
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


def _name_matches(pattern: str | None, *values: str | None) -> bool:
    if not pattern:
        return True
    prefix = pattern.endswith("*")
    wanted = search_key(pattern.rstrip("*"))
    keys = [search_key(v) for v in values if v]
    return any(k.startswith(wanted) if prefix else k == wanted for k in keys)


def _text_matches(pattern: str | None, value: str | None) -> bool:
    if not pattern:
        return True
    if pattern.endswith("*"):
        return (value or "").startswith(pattern.rstrip("*"))
    return value == pattern.strip()


def _matches(record: SourceRecord, person_id: int, q: PersonQuery, master: str) -> bool:
    d = record.demographics
    if not _name_matches(q.family, d.birth_family_name, d.used_family_name):
        return False
    if not _name_matches(q.given, d.given_names[0] if d.given_names else None):
        return False
    if q.family_exact and q.family_exact not in (d.birth_family_name, d.used_family_name):
        return False
    if q.given_exact and q.given_exact != (d.given_names[0] if d.given_names else None):
        return False
    if q.birth_date and d.birth_date != q.birth_date:
        return False
    if q.sex and d.sex != q.sex:
        return False
    if not _text_matches(q.postcode, d.postcode) or not _text_matches(q.phone, d.phone):
        return False
    if not _name_matches(q.city, d.city):
        return False
    if q.person_ids is not None and person_id not in q.person_ids:
        return False
    if q.identifier:
        if q.identifier.authority == master:
            return person_id_of_master_id(q.identifier.value) == person_id
        return q.identifier in (record.identifier, record.qualified_ins)
    return True


class FakeLinks:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def for_record(self, record_id: int) -> Link | None:
        return self.store.links.get(record_id)

    def save(self, link: Link) -> None:
        self.store.links[link.record_id] = link

    def of_person(self, person_id: int) -> list[Link]:
        return [link for link in self.store.links.values() if link.person_id == person_id]


class FakeSeparations:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def add(self, first: int, second: int, reason: str, decided_by: str) -> None:
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
        for existing in self.open_for_record(task.record_id):
            if existing.person_id == task.person_id:
                task.id = existing.id
                return
        task.id = self.store.next_id()
        self.store.reviews[task.id] = task

    def get(self, task_id: int) -> ReviewTask | None:
        return self.store.reviews.get(task_id)

    def save(self, task: ReviewTask) -> None:
        assert task.id in self.store.reviews
        self.store.reviews[task.id] = task

    def list(self, status, offset, limit):  # type: ignore[no-untyped-def]
        tasks = [t for t in sorted(self.store.reviews.values(), key=lambda t: t.id or 0)
                 if status is None or t.status is status]
        return tasks[offset:offset + limit], len(tasks)

    def open_for_record(self, record_id: int) -> list[ReviewTask]:
        return [t for t in self.store.reviews.values()
                if t.record_id == record_id and t.status is ReviewStatus.OPEN]


class FakeModels:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def active(self):  # type: ignore[no-untyped-def]
        for version, (document, active) in self.store.models.items():
            if active:
                return version, document
        return None

    def add(self, version, document, activate):  # type: ignore[no-untyped-def]
        if activate:
            self.store.models = {v: (d, False) for v, (d, _) in self.store.models.items()}
        self.store.models[version] = (document, activate)

    def versions(self):  # type: ignore[no-untyped-def]
        return [(v, datetime(2026, 1, 1, tzinfo=UTC), a)
                for v, (_, a) in reversed(list(self.store.models.items()))]


class FakeOutbox:
    """Events of this unit of work wait in ``pending`` until commit, which appends them to
    the store's events and outbox rows."""

    def __init__(self, store: _Store, pending: list[Event]) -> None:
        self.store = store
        self.pending = pending

    def add(self, event: Event) -> None:
        self.pending.append(event)

    def claim(self, now: datetime, limit: int) -> list[StoredEvent]:
        rows = [
            StoredEvent(row["id"], row["event"], row["occurred_at"], row["attempts"])
            for row in self.store.outbox
            if row["processed_at"] is None and (row["due_at"] is None or row["due_at"] <= now)
        ]
        return rows[:limit]

    def _row(self, event_id: int) -> dict[str, Any]:
        return next(row for row in self.store.outbox if row["id"] == event_id)

    def mark_processed(self, event_ids: Iterable[int], when: datetime) -> None:
        for event_id in event_ids:
            self._row(event_id).update(processed_at=when, last_error=None)

    def mark_failed(self, event_id: int, attempts: int, retry_at: datetime, error: str) -> None:
        self._row(event_id).update(attempts=attempts, due_at=retry_at, last_error=error)

    def pending_count(self) -> int:
        return sum(1 for row in self.store.outbox if row["processed_at"] is None)


class FakeNotifications:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def enqueue(self, consumer: str, person_id: int, due: datetime) -> None:
        for row in self.store.notifications.values():
            if row["consumer"] == consumer and row["person_id"] == person_id:
                if row["status"] == "pending":
                    return
        nid = self.store.next_id()
        self.store.notifications[nid] = {
            "consumer": consumer, "person_id": person_id, "status": "pending",
            "attempts": 0, "due_at": due, "last_error": None,
        }

    def claim_due(self, consumer: str, now: datetime, limit: int) -> list[PendingNotification]:
        rows = [
            PendingNotification(nid, consumer, int(row["person_id"]), int(row["attempts"]))  # type: ignore[call-overload]
            for nid, row in sorted(self.store.notifications.items())
            if row["consumer"] == consumer and row["status"] == "pending"
            and row["due_at"] <= now  # type: ignore[operator]
        ]
        return rows[:limit]

    def mark_sent(self, notification_id: int, when: datetime) -> None:
        self.store.notifications[notification_id]["status"] = "sent"

    def mark_failed(self, notification_id: int, attempts: int, retry_at: datetime, error: str) -> None:
        row = self.store.notifications[notification_id]
        row.update(attempts=attempts, due_at=retry_at, last_error=error)

    def pending_count(self, consumer: str) -> int:
        return sum(
            1 for row in self.store.notifications.values()
            if row["consumer"] == consumer and row["status"] == "pending"
        )


class FakeJournal:
    def __init__(self, store: _Store) -> None:
        self.store = store

    def find(self, sender: str, control_id: str) -> JournalEntry | None:
        return next(
            (e for e in self.store.journal.values()
             if e.sender == sender and e.control_id == control_id),
            None,
        )

    def add(self, entry: JournalEntry) -> None:
        if entry.sender and entry.control_id and self.find(entry.sender, entry.control_id):
            raise ConcurrencyError("duplicate control id")
        entry.id = self.store.next_id()
        self.store.journal[entry.id] = entry

    def save(self, entry: JournalEntry) -> None:
        assert entry.id is not None
        self.store.journal[entry.id] = entry

    def get(self, entry_id: int) -> JournalEntry | None:
        return self.store.journal.get(entry_id)

    def list(self, statuses: Iterable[JournalStatus] | None = None, limit: int = 100) -> list[JournalEntry]:
        wanted = set(statuses) if statuses is not None else None
        entries = [e for e in self.store.journal.values() if wanted is None or e.status in wanted]
        return sorted(entries, key=lambda e: e.id or 0, reverse=True)[:limit]


class FakeUnitOfWork:
    """A unit of work over an in-memory store. Changes are made on a deep copy of the store and
    become visible to the next unit of work only on commit, as with a database."""

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
        self.committed = False
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.rollback()

    def commit(self) -> None:
        for event in self._pending_events:
            self.store.events.append(event)
            self.store.outbox.append({
                "id": self.store.next_id(), "event": event,
                "occurred_at": datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
                "processed_at": None, "attempts": 0, "due_at": None, "last_error": None,
            })
        self._pending_events.clear()
        # Hand the committed state over in place so that later units of work see it.
        self.committed_store.__dict__.update(copy.deepcopy(self.store).__dict__)
        self.committed = True

    def rollback(self) -> None:
        self._pending_events.clear()

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
