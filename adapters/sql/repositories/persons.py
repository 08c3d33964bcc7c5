"""Persons (master identities) and the demographic search over their records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    distinct,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import links, persons, source_records, utc_now
from mpi.model import Identifier, Person, PersonStatus, RecordStatus, person_id_of_master_id
from mpi.normalize import search_key
from mpi.ports import PersonQuery

__all__ = ["SqlPersonRepository"]

_BY_ID = select(persons).where(persons.c.id == bindparam("b_id"))
_INSERT = insert(persons).returning(persons.c.id)
_UPDATE = update(persons).where(persons.c.id == bindparam("b_id"))

def _person_from_row(row: Any) -> Person:
    return Person(
        status=PersonStatus(row.status),
        merged_into=row.merged_into,
        created_at=row.created_at,
        id=row.id,
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text_criterion(value: str | None, *columns: Any) -> ColumnElement[bool] | None:
    """Folded equality with any of the key columns; a trailing ``*`` makes it a prefix.
    None when the value has nothing searchable left (then it is ignored)."""
    if not value:
        return None
    text = value.strip()
    prefix = text.endswith("*")
    key = search_key(text.rstrip("*"))
    if not key:
        return None
    if prefix:
        pattern = _escape_like(key) + "%"
        return or_(*(column.like(pattern, escape="\\") for column in columns))
    return or_(*(column == key for column in columns))


def _exact_family(value: str | None) -> ColumnElement[bool] | None:
    """A birth or used family name exactly as written; the folded key keeps it indexed."""
    if not value:
        return None
    key = search_key(value)
    records = source_records.c
    return or_(
        and_(records.birth_name_key == key, records.birth_family_name == value),
        and_(records.used_name_key == key, records.used_family_name == value),
    )


def _exact_given(value: str | None) -> ColumnElement[bool] | None:
    """The first given name exactly as written."""
    if not value:
        return None
    records = source_records.c
    return and_(records.given_key == search_key(value),
                records.given_names[0].as_string() == value)


def _prefix_or_equal(value: str | None, column: Any) -> ColumnElement[bool] | None:
    """Equality with the value as stored, or a prefix with a trailing ``*``."""
    text = (value or "").strip()
    if not text.rstrip("*"):
        return None
    if text.endswith("*"):
        return column.like(_escape_like(text.rstrip("*")) + "%", escape="\\")
    return column == text


class SqlPersonRepository:
    def __init__(self, sql: SqlConnection, master_authority: str) -> None:
        self._sql = sql
        self._master_authority = master_authority

    def get(self, person_id: int) -> Person | None:
        row = self._sql.execute(_BY_ID, {"b_id": person_id}).first()
        return None if row is None else _person_from_row(row)

    def add(self, person: Person) -> None:
        """Insert a new person (``created_at`` defaults to now). Raises ValueError for a person
        already stored."""
        if person.id is not None:
            raise ValueError(f"person {person.id} is already stored")
        created_at = person.created_at or utc_now()
        values = {"status": person.status.value, "merged_into": person.merged_into,
                  "created_at": created_at}
        person.id = self._sql.execute(_INSERT, values).scalar_one()
        person.created_at = created_at

    def save(self, person: Person) -> None:
        """Raises ValueError for a person never stored."""
        values = {"b_id": person.id, "status": person.status.value,
                  "merged_into": person.merged_into}
        if person.id is None or self._sql.execute(_UPDATE, values).rowcount != 1:
            raise ValueError(f"person {person.id} is not stored")

    def search(self, query: PersonQuery, offset: int, limit: int) -> tuple[list[int], int]:
        if query.is_empty():
            return [], 0
        if not query.active:
            return self._search_merged(query, offset, limit)
        criteria = self._criteria(query)
        if not criteria:
            return [], 0  # nothing searchable was left in the values (e.g. only separators)
        joined = source_records.join(links, links.c.record_id == source_records.c.id).join(
            persons, persons.c.id == links.c.person_id
        )
        where = and_(
            source_records.c.status == RecordStatus.ACTIVE.value,
            persons.c.status == PersonStatus.ACTIVE.value,
            *criteria,
        )
        total = self._sql.execute(
            select(func.count(distinct(links.c.person_id))).select_from(joined).where(where)
        ).scalar_one()
        if total <= offset or limit <= 0:
            return [], total
        page = (
            select(links.c.person_id)
            .select_from(joined)
            .where(where)
            .distinct()
            .order_by(links.c.person_id)
            .offset(offset)
            .limit(limit)
        )
        return list(self._sql.execute(page).scalars()), total

    def _search_merged(self, query: PersonQuery, offset: int, limit: int) -> tuple[list[int], int]:
        """Merged persons have no records: only their numbers can select them."""
        if query.has_record_criteria():
            return [], 0
        where = and_(
            persons.c.status == PersonStatus.MERGED.value,
            persons.c.id.in_(query.person_ids or ()),
        )
        total = self._sql.execute(select(func.count()).where(where)).scalar_one()
        if total <= offset or limit <= 0:
            return [], total
        page = select(persons.c.id).where(where).order_by(persons.c.id).offset(offset).limit(limit)
        return list(self._sql.execute(page).scalars()), total

    def _criteria(self, query: PersonQuery) -> list[ColumnElement[bool]]:
        records = source_records.c
        optional = [
            _text_criterion(query.family, records.birth_name_key, records.used_name_key),
            _text_criterion(query.given, records.given_key),
            _text_criterion(query.city, records.city_key),
            _exact_family(query.family_exact),
            _exact_given(query.given_exact),
            _prefix_or_equal(query.postcode, records.postcode),
            _prefix_or_equal(query.phone, records.phone),
        ]
        criteria = [criterion for criterion in optional if criterion is not None]
        if query.birth_date is not None:
            criteria.append(records.birth_date == query.birth_date)
        if query.sex:
            criteria.append(records.sex == query.sex)
        if query.identifier is not None:
            criteria.append(self._identifier_criterion(query.identifier))
        if query.domain is not None:
            criteria.append(self._domain_criterion(query.domain))
        if query.person_ids is not None:
            criteria.append(links.c.person_id.in_(query.person_ids))
        return criteria

    def _domain_criterion(self, domain: str) -> ColumnElement[bool]:
        """The person holds an identifier of the domain on one of its active records (every
        active person holds one in the master domain)."""
        if domain == self._master_authority:
            return true()
        other = source_records.alias("domain_record")
        other_link = links.alias("domain_link")
        held = or_(
            other.c.authority == domain,
            and_(other.c.ins_authority == domain, other.c.ins_qualified == true()),
        )
        return exists(
            select(other.c.id)
            .select_from(other.join(other_link, other_link.c.record_id == other.c.id))
            .where(other_link.c.person_id == links.c.person_id,
                   other.c.status == RecordStatus.ACTIVE.value, held)
        )

    def _identifier_criterion(self, identifier: Identifier) -> ColumnElement[bool]:
        records = source_records.c
        options = [
            and_(records.authority == identifier.authority, records.value == identifier.value),
            and_(
                records.ins_authority == identifier.authority,
                records.ins_value == identifier.value,
                records.ins_qualified == true(),
            ),
        ]
        if identifier.authority == self._master_authority:
            person_id = person_id_of_master_id(identifier.value)
            if person_id is not None:
                options.append(links.c.person_id == person_id)
        return or_(*options)


