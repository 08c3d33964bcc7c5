"""Domain events: what happened, in the past tense. Written to the outbox with the change."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
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
    "event_payload",
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
