"""Domain events: what happened, in the past tense. Written to the outbox in the transaction of
the change that caused them; read back from it by the dispatcher (:mod:`mpi.handlers`), which
hands each to the handlers subscribed to its type."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mpi.model import Identifier

__all__ = [
    "Event",
    "RecordRegistered",
    "RecordUpdated",
    "RecordRetired",
    "RecordDeleted",
    "RecordLinked",
    "RecordUnlinked",
    "PersonCreated",
    "PersonsMerged",
    "PersonIdentifiersChanged",
    "ReviewRequested",
    "ReviewDecided",
    "UpdateQuarantined",
    "StudyStored",
    "StudyReassigned",
    "StudyDestroyed",
    "StoredEvent",
    "UnreadableEvent",
    "EVENT_TYPES",
    "event_payload",
    "event_from_payload",
    "persons_concerned",
]


@dataclass(frozen=True)
class Event:
    @property
    def name(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class RecordRegistered(Event):
    record_id: int
    identifier: Identifier


@dataclass(frozen=True)
class RecordUpdated(Event):
    record_id: int
    identifier: Identifier
    version: int


@dataclass(frozen=True)
class RecordRetired(Event):
    record_id: int
    identifier: Identifier
    survivor_id: int
    survivor: Identifier
    reason: str  # "merge" (A40) or "identifier-change" (A47)


@dataclass(frozen=True)
class RecordDeleted(Event):
    """A source removed one of its records (FHIR conditional delete): it designates nobody."""

    record_id: int
    identifier: Identifier
    person_id: int


@dataclass(frozen=True)
class RecordLinked(Event):
    record_id: int
    person_id: int
    method: str
    score: float | None = None


@dataclass(frozen=True)
class RecordUnlinked(Event):
    record_id: int
    from_person_id: int
    to_person_id: int
    reason: str


@dataclass(frozen=True)
class PersonCreated(Event):
    person_id: int


@dataclass(frozen=True)
class PersonsMerged(Event):
    survivor_id: int
    retired_id: int
    reason: str


@dataclass(frozen=True)
class PersonIdentifiersChanged(Event):
    """The set of identifiers designating a person changed (what PIX notifications announce)."""

    person_id: int
    before: frozenset[Identifier]
    after: frozenset[Identifier]


@dataclass(frozen=True)
class ReviewRequested(Event):
    record_id: int
    person_id: int
    score: float


@dataclass(frozen=True)
class ReviewDecided(Event):
    task_id: int
    decision: str
    decided_by: str
    reason: str


@dataclass(frozen=True)
class UpdateQuarantined(Event):
    """An update of a record described another person (an identity collision): it was held
    for review (task ``task_id``), not applied; the record and its studies stay where they
    were until a person decides."""

    record_id: int
    identifier: Identifier
    person_id: int
    task_id: int
    reason: str


@dataclass(frozen=True)
class StudyStored(Event):
    """A new study entered the archive, for the record of the patient it arrived with."""

    record_id: int
    study_instance_uid: str


@dataclass(frozen=True)
class StudyReassigned(Event):
    """A study filed under the wrong patient was moved to another record (IOCM)."""

    study_instance_uid: str
    from_record_id: int
    to_record_id: int
    by: str


@dataclass(frozen=True)
class StudyDestroyed(Event):
    """A study reached the end of its retention and was destroyed (its tombstone remains)."""

    study_instance_uid: str
    establishment: str
    proposal_id: int


def event_payload(event: Event) -> dict[str, Any]:
    """A JSON-ready dictionary of an event's fields (identifiers as ``DOMAIN|value``)."""
    payload: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, Identifier):
            value = str(value)
        elif isinstance(value, frozenset):
            value = sorted(str(v) for v in value)
        payload[f.name] = value
    return payload


_PERSON_FIELDS = ("person_id", "from_person_id", "to_person_id")


def persons_concerned(events: Iterable[Event]) -> set[int]:
    """The master persons a set of events changed (what the access trail names)."""
    found: set[int] = set()
    for event in events:
        if isinstance(event, PersonsMerged):
            found.update((event.survivor_id, event.retired_id))
        for name in _PERSON_FIELDS:
            value = getattr(event, name, None)
            if isinstance(value, int):
                found.add(value)
    return found


# Every event type, by the name the outbox stores.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls for cls in (
        RecordRegistered, RecordUpdated, RecordRetired, RecordDeleted, RecordLinked,
        RecordUnlinked, PersonCreated, PersonsMerged, PersonIdentifiersChanged,
        ReviewRequested, ReviewDecided, UpdateQuarantined, StudyStored, StudyReassigned,
        StudyDestroyed,
    )
}


def event_from_payload(name: str, payload: Mapping[str, Any]) -> Event:
    """The event an outbox row holds (the inverse of :func:`event_payload`). Raises KeyError
    for an unknown event type or a missing field, ValueError for a malformed identifier."""
    cls = EVENT_TYPES[name]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in payload:
            if f.default is not dataclasses.MISSING:
                continue
            raise KeyError(f"{name} event without {f.name}")
        value = payload[f.name]
        hint = hints[f.name]
        if hint is Identifier:
            value = Identifier.parse(value)
        elif hint == frozenset[Identifier]:
            value = frozenset(Identifier.parse(v) for v in value)
        values[f.name] = value
    return cls(**values)


@dataclass(frozen=True)
class UnreadableEvent(Event):
    """An outbox row this code cannot read (a type or a payload written by another version).
    Never written; no handler subscribes to it, so the dispatcher reports it as failed."""

    type_name: str
    error: str


@dataclass(frozen=True)
class StoredEvent:
    """An event read back from the outbox, with its position and delivery state."""

    id: int
    event: Event
    occurred_at: datetime
    attempts: int = 0
