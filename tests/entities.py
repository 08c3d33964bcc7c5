"""Entities for the repository tests: source records, persons with their links, journal
entries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mpi.model import (
    Demographics,
    Identifier,
    JournalEntry,
    JournalStatus,
    Link,
    LinkMethod,
    Person,
    SourceRecord,
)
from mpi.ports import UnitOfWork

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
INS_A = Identifier("INS-NIR", "180012A00100145")
INS_B = Identifier("INS-NIR", "290035400100188")


def make_record(
    value: str,
    authority: str = "CHRU",
    *,
    ins: Identifier | None = None,
    reliability: tuple[str, ...] = (),
    **demographics: Any,
) -> SourceRecord:
    return SourceRecord(
        identifier=Identifier(authority, value),
        demographics=Demographics(**demographics),
        ins=ins,
        reliability=reliability,
        updated_at=NOW,
    )


def add_person(uow: UnitOfWork, *records: SourceRecord) -> int:
    """Store a new person and link the given records (stored first when new) to it."""
    person = Person(created_at=NOW)
    uow.persons.add(person)
    assert person.id is not None
    for record in records:
        if record.id is None:
            uow.records.add(record)
        assert record.id is not None
        uow.links.save(Link(record.id, person.id, LinkMethod.NEW, decided_at=NOW))
    return person.id


def journal_entry(control_id: str | None, sender: str | None = "CHRU") -> JournalEntry:
    return JournalEntry(
        channel="mllp",
        raw=f"MSH|^~\\&|HIS|{sender}|MPI|GCS|20240301||ADT^A28|{control_id}|P|2.5",
        received_at=NOW,
        status=JournalStatus.APPLIED,
        sender=sender,
        control_id=control_id,
        message_type="ADT^A28",
        ack_code="AA",
    )
