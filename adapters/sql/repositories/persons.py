"""Persons (master identities) and the demographic search over their records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    distinct,
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
        criteria = self._criteria(query)
        if not criteria:
            return [], 0
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

    def _criteria(self, query: PersonQuery) -> list[ColumnElement[bool]]:
        records = source_records.c
        optional = [
            _text_criterion(query.family, records.birth_name_key, records.used_name_key),
            _text_criterion(query.given, records.given_key),
            _text_criterion(query.city, records.city_key),
        ]
        criteria = [criterion for criterion in optional if criterion is not None]
        if query.birth_date is not None:
            criteria.append(records.birth_date == query.birth_date)
        if query.sex:
            criteria.append(records.sex == query.sex)
        if query.postcode:
            criteria.append(records.postcode == query.postcode.strip())
        if query.identifier is not None:
            criteria.append(self._identifier_criterion(query.identifier))
        return criteria

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


