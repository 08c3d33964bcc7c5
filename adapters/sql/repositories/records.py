"""Source records and their history.

Statements are built once and executed with parameters: on the feed's hot path, building and
caching SQLAlchemy constructs per call costs more than the round trip. History rows are
buffered and written at commit in one statement.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, literal, select, true, union_all, update
from sqlalchemy.engine import RowMapping

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import links, persons, source_record_versions, source_records, utc_now
from mpi.errors import ConcurrencyError
from mpi.matching.profile import blocking_keys, profile_of
from mpi.model import (
    DEMOGRAPHIC_FIELDS,
    Demographics,
    Identifier,
    PersonStatus,
    RecordStatus,
    SourceRecord,
)
from mpi.normalize import search_key

__all__ = ["SqlRecordRepository"]

_r = source_records.c
_SELECT = select(source_records)
_BY_ID = _SELECT.where(_r.id == bindparam("b_id"))
_BY_IDENTIFIER = _SELECT.where(_r.authority == bindparam("b_authority"),
                               _r.value == bindparam("b_value"))
_WITH_QUALIFIED_INS = _SELECT.where(
    _r.ins_authority == bindparam("b_authority"),
    _r.ins_value == bindparam("b_value"),
    _r.ins_qualified == true(),
    _r.status == RecordStatus.ACTIVE.value,
).order_by(_r.id)
_RETIRED_INTO = _SELECT.where(_r.retired_into == bindparam("b_id")).order_by(_r.id)
_LINKED_TO = (
    _SELECT.join(links, links.c.record_id == _r.id)
    .where(links.c.person_id == bindparam("b_person"))
    .order_by(_r.id)
)
# The status is filtered here, not in SQL: a filter on it makes the planner of a young
# database (no statistics yet) scan every record instead of following the person's links.
_IDENTIFIERS_OF = (
    select(_r.authority, _r.value, _r.status, _r.ins_authority, _r.ins_value, _r.ins_qualified)
    .join(links, links.c.record_id == _r.id)
    .where(links.c.person_id == bindparam("b_person"))
)
_INSERT = insert(source_records).returning(_r.id)
# Where each blocking key is looked up: the two name keys in both name columns, so that a used
# name at one site finds the birth name at another.
_KEY_COLUMNS = (
    ("name_year", "block_name_year"),
    ("name_year", "block_used_name"),
    ("used_name", "block_name_year"),
    ("used_name", "block_used_name"),
    ("date_sex", "block_date_sex"),
    ("given_family", "block_given_family"),
    ("place_date", "block_place_date"),
)


@functools.lru_cache(maxsize=8)
def _candidate_ids(cap: int) -> Any:
    """One statement for every block, each LIMITed to cap + 1 (a huge block costs no more
    than a small one); a key the record lacks is bound to NULL and matches nothing."""
    branches = [
        select(literal(name).label("key"), _r.id)
        .where(source_records.c[column] == bindparam(f"k_{name}"))
        .limit(cap + 1)
        .subquery()
        .select()
        for name, column in _KEY_COLUMNS
    ]
    return union_all(*branches)


_CANDIDATES = (
    select(source_records, links.c.person_id)
    .join(links, links.c.record_id == _r.id)
    .join(persons, persons.c.id == links.c.person_id)
    .where(_r.id.in_(bindparam("b_ids", expanding=True)),
           _r.status == RecordStatus.ACTIVE.value,
           persons.c.status == PersonStatus.ACTIVE.value)
)
_UPDATE = update(source_records).where(_r.id == bindparam("b_id"),
                                       _r.version == bindparam("b_version"))
_INSERT_VERSION = insert(source_record_versions)
_v = source_record_versions.c
_HISTORY = (
    select(_v.version, _v.recorded_at, _v.data)
    .where(_v.record_id == bindparam("b_id"))
    .order_by(_v.version)
)


def _key(text: str | None) -> str | None:
    return search_key(text) or None


def _record_values(record: SourceRecord, version: int) -> dict[str, Any]:
    demographics = record.demographics
    values: dict[str, Any] = {name: getattr(demographics, name) for name in DEMOGRAPHIC_FIELDS}
    values["given_names"] = list(demographics.given_names)
    first_given = demographics.given_names[0] if demographics.given_names else None
    values.update(
        authority=record.identifier.authority,
        value=record.identifier.value,
        status=record.status.value,
        retired_into=record.retired_into,
        ins_authority=record.ins.authority if record.ins else None,
        ins_value=record.ins.value if record.ins else None,
        ins_qualified=record.qualified_ins is not None,
        reliability=" ".join(record.reliability),
        birth_name_key=_key(demographics.birth_family_name),
        used_name_key=_key(demographics.used_family_name),
        given_key=_key(first_given),
        city_key=_key(demographics.city),
        last_activity=record.last_activity,
        **{f"block_{name}": value
           for name, value in blocking_keys(profile_of(record)).items()},
        updated_at=record.updated_at,
        version=version,
    )
    return values


def _record_from_row(row: RowMapping) -> SourceRecord:
    fields = {name: row[name] for name in DEMOGRAPHIC_FIELDS}
    fields["given_names"] = tuple(row["given_names"] or ())
    ins = None
    if row["ins_authority"] is not None and row["ins_value"] is not None:
        ins = Identifier(row["ins_authority"], row["ins_value"])
    return SourceRecord(
        identifier=Identifier(row["authority"], row["value"]),
        demographics=Demographics(**fields),
        ins=ins,
        reliability=tuple(row["reliability"].split()),
        status=RecordStatus(row["status"]),
        retired_into=row["retired_into"],
        last_activity=row["last_activity"],
        updated_at=row["updated_at"],
        version=row["version"],
        id=row["id"],
    )


def _snapshot(record: SourceRecord) -> dict[str, Any]:
    return {
        "identifier": str(record.identifier),
        "status": record.status.value,
        "retired_into": record.retired_into,
        "ins": str(record.ins) if record.ins else None,
        "reliability": list(record.reliability),
        "demographics": record.demographics.as_dict(),
        "last_activity": record.last_activity.isoformat() if record.last_activity else None,
    }


class SqlRecordRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql
        self._versions: list[dict[str, Any]] = []

    def _many(self, statement: Any, **parameters: Any) -> list[SourceRecord]:
        return [_record_from_row(row._mapping) for row in self._sql.execute(statement, parameters)]

    def get(self, record_id: int) -> SourceRecord | None:
        found = self._many(_BY_ID, b_id=record_id)
        return found[0] if found else None

    def by_identifier(self, identifier: Identifier) -> SourceRecord | None:
        found = self._many(_BY_IDENTIFIER, b_authority=identifier.authority,
                           b_value=identifier.value)
        return found[0] if found else None

    def add(self, record: SourceRecord) -> None:
        """Insert a new record as version 1. Raises ValueError for a record already stored,
        ConcurrencyError when another transaction stored the same identifier first."""
        if record.id is not None:
            raise ValueError(f"record {record.id} is already stored")
        record.id = self._sql.execute(_INSERT, _record_values(record, version=1)).scalar_one()
        record.version = 1
        self._keep_version(record)

    def save(self, record: SourceRecord) -> None:
        """Store the next version. Raises ValueError for a record never stored,
        ConcurrencyError when the stored version is no longer the one that was read."""
        if record.id is None:
            raise ValueError("a record must be added before it is saved")
        next_version = record.version + 1
        values = _record_values(record, version=next_version)
        values.update(b_id=record.id, b_version=record.version)
        if self._sql.execute(_UPDATE, values).rowcount != 1:
            raise ConcurrencyError(
                f"record {record.id} changed since version {record.version} was read"
            )
        record.version = next_version
        self._keep_version(record)

    def _keep_version(self, record: SourceRecord) -> None:
        # The core stamps updated_at with its clock on every change: the history uses it.
        self._versions.append({
            "record_id": record.id,
            "version": record.version,
            "recorded_at": record.updated_at or utc_now(),
            "data": _snapshot(record),
        })

    def flush(self) -> None:
        """Write the buffered history rows now (before the history is read)."""
        if self._versions:
            self._sql.execute(_INSERT_VERSION, self._versions)
            self._versions = []

    def take_pending(self) -> tuple[Table, list[dict[str, Any]]]:
        """The buffered history rows, for the unit of work to write at commit."""
        pending, self._versions = self._versions, []
        return source_record_versions, pending

    def discard(self) -> None:
        self._versions = []

    def with_qualified_ins(self, ins: Identifier) -> list[SourceRecord]:
        return self._many(_WITH_QUALIFIED_INS, b_authority=ins.authority, b_value=ins.value)

    def retired_into(self, record_id: int) -> list[SourceRecord]:
        return self._many(_RETIRED_INTO, b_id=record_id)

    def linked_to(self, person_id: int) -> list[SourceRecord]:
        return self._many(_LINKED_TO, b_person=person_id)

    def identifiers_of(self, person_id: int) -> list[Identifier]:
        found = []
        for row in self._sql.execute(_IDENTIFIERS_OF, {"b_person": person_id}):
            if row.status != RecordStatus.ACTIVE.value:
                continue
            found.append(Identifier(row.authority, row.value))
            if row.ins_qualified and row.ins_authority and row.ins_value:
                found.append(Identifier(row.ins_authority, row.ins_value))
        return found

    def sample(self, limit: int) -> list[SourceRecord]:
        statement = (
            _SELECT.where(_r.status == RecordStatus.ACTIVE.value)
            .order_by(func.random()).limit(limit)
        )
        return self._many(statement)

    def candidates(
        self, keys: Mapping[str, str], cap: int, exclude: int | None = None
    ) -> tuple[list[tuple[SourceRecord, int]], list[str]]:
        """Records sharing a blocking key, with their person; blocks over ``cap`` skipped.

        One statement finds the ids block by block (each LIMITed to cap + 1 so that a huge
        block costs no more than a small one), a second reads the records."""
        names = {name for name, _ in _KEY_COLUMNS}
        parameters = {f"k_{name}": keys.get(name) for name in names}
        if not any(parameters.values()):
            return [], []
        statement = _candidate_ids(cap)
        per_key: dict[str, set[int]] = {}
        for row in self._sql.execute(statement, parameters):
            per_key.setdefault(row.key, set()).add(row.id)
        oversized = sorted(name for name, ids in per_key.items() if len(ids) > cap)
        wanted = set().union(*(ids for name, ids in per_key.items() if name not in oversized))
        wanted.discard(exclude)
        if not wanted:
            return [], oversized
        found = [
            (_record_from_row(row._mapping), row.person_id)
            for row in self._sql.execute(_CANDIDATES, {"b_ids": sorted(wanted)})
        ]
        return found, oversized

    def history(self, record_id: int) -> list[dict[str, object]]:
        self.flush()
        return [
            {**row.data, "version": row.version, "recorded_at": row.recorded_at}
            for row in self._sql.execute(_HISTORY, {"b_id": record_id})
        ]
