"""The read side of the index: who is this identifier, what identifies a person, who matches."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from mpi.authorities import AuthorityRegistry
from mpi.errors import UnknownIdentifierError
from mpi.model import (
    Demographics,
    Identifier,
    Person,
    PersonStatus,
    SourceRecord,
    master_id_of,
    person_id_of_master_id,
)
from mpi.ports import PersonQuery, UnitOfWork

__all__ = [
    "PersonView",
    "resolve_record",
    "resolve_person",
    "current_person",
    "person_identifiers",
    "golden_demographics",
    "person_view",
    "search_persons",
    "CrossReference",
    "cross_reference",
]

_MAX_CHAIN = 64  # merges chain rarely more than a few times; a cycle would be a bug


@dataclass(frozen=True)
class PersonView:
    """A person as the outside world sees it: identifiers and golden demographics."""

    person: Person
    identifiers: tuple[Identifier, ...]
    demographics: Demographics
    records: tuple[SourceRecord, ...]

    @property
    def qualified_ins(self) -> Identifier | None:
        for record in self.records:
            if record.qualified_ins is not None:
                return record.qualified_ins
        return None

    @property
    def reliability(self) -> tuple[str, ...]:
        """The reliability codes of the record the golden view comes from."""
        return self.records[0].reliability if self.records else ()


def resolve_record(uow: UnitOfWork, identifier: Identifier) -> SourceRecord | None:
    """The active record an identifier designates, following A40/A47 retirements.

    A retired identifier resolves to the record it was folded into; a deleted one to nothing.
    """
    record = uow.records.by_identifier(identifier)
    for _ in range(_MAX_CHAIN):
        if record is None or record.is_active:
            return record
        if record.retired_into is None:
            return None
        record = uow.records.get(record.retired_into)
    raise RuntimeError(f"retirement chain too long from {identifier}")


def current_person(uow: UnitOfWork, person_id: int) -> Person | None:
    """The person a number designates now, following merges."""
    person = uow.persons.get(person_id)
    for _ in range(_MAX_CHAIN):
        if person is None or person.status is PersonStatus.ACTIVE:
            return person
        if person.merged_into is None:
            return None
        person = uow.persons.get(person.merged_into)
    raise RuntimeError(f"merge chain too long from person {person_id}")


def resolve_person(
    uow: UnitOfWork, registry: AuthorityRegistry, identifier: Identifier
) -> Person | None:
    """The active person an identifier designates (a local id, an INS or a master id)."""
    if identifier.authority == registry.master.code:
        person_id = person_id_of_master_id(identifier.value)
        return None if person_id is None else current_person(uow, person_id)
    if registry.by_code(identifier.authority).is_national:
        for holder in uow.records.with_qualified_ins(identifier):
            link = uow.links.for_record(holder.id) if holder.id is not None else None
            if link is not None:
                return current_person(uow, link.person_id)
        return None
    record = resolve_record(uow, identifier)
    if record is None or record.id is None:
        return None
    link = uow.links.for_record(record.id)
    return None if link is None else current_person(uow, link.person_id)


def _ordered_records(records: list[SourceRecord]) -> list[SourceRecord]:
    """Active records, the qualified identity first, then the most recently updated."""
    oldest = datetime.min.replace(tzinfo=UTC)
    active = [r for r in records if r.is_active]
    return sorted(
        active,
        key=lambda r: (r.qualified_ins is not None, r.updated_at or oldest, r.id or 0),
        reverse=True,
    )


def person_identifiers(
    registry: AuthorityRegistry, person: Person, records: list[SourceRecord]
) -> tuple[Identifier, ...]:
    """Master id, the local ids of the active records, and the INS where qualified."""
    assert person.id is not None
    found = {Identifier(registry.master.code, master_id_of(person.id))}
    for record in records:
        if record.is_active:
            found.add(record.identifier)
            if record.qualified_ins is not None:
                found.add(record.qualified_ins)
    return tuple(sorted(found))


def golden_demographics(records: list[SourceRecord]) -> Demographics:
    """The person's best demographics: the qualified identity's, else the latest record's."""
    ordered = _ordered_records(records)
    return ordered[0].demographics if ordered else Demographics()


def person_view(uow: UnitOfWork, registry: AuthorityRegistry, person: Person) -> PersonView:
    assert person.id is not None
    records = _ordered_records(uow.records.linked_to(person.id))
    return PersonView(
        person=person,
        identifiers=person_identifiers(registry, person, records),
        demographics=records[0].demographics if records else Demographics(),
        records=tuple(records),
    )


def search_persons(
    uow: UnitOfWork, registry: AuthorityRegistry, query: PersonQuery, offset: int, limit: int
) -> tuple[list[PersonView], int]:
    """One page of the persons matching a demographic query, and the total count."""
    person_ids, total = uow.persons.search(query, offset, limit)
    views = []
    for person_id in person_ids:
        person = uow.persons.get(person_id)
        if person is not None:
            views.append(person_view(uow, registry, person))
    return views, total


@dataclass(frozen=True)
class CrossReference:
    """The answer to "who else is this patient?" (PIX Query, PIXm): the person an identifier
    designates and its identifiers in the domains asked for, the queried one left out."""

    person: Person
    identifiers: tuple[Identifier, ...]


def cross_reference(uow: UnitOfWork, registry: AuthorityRegistry, source: Identifier,
                    target_domains: Collection[str] | None = None) -> CrossReference:
    """The person ``source`` designates (a local identifier, a qualified INS or a master id; a
    retired identifier follows the record it was folded into) and its other identifiers in
    ``target_domains`` (authority codes; every domain when None). Raises
    UnknownIdentifierError when no active person has the identifier, UnknownAuthorityError
    for an undeclared domain."""
    person = resolve_person(uow, registry, source)
    if person is None or person.id is None:
        raise UnknownIdentifierError(f"no patient has the identifier {source.value} in "
                                     f"{source.authority}")
    view = person_view(uow, registry, person)
    identifiers = tuple(
        identifier for identifier in view.identifiers
        if identifier != source
        and (target_domains is None or identifier.authority in target_domains)
    )
    return CrossReference(person, identifiers)
