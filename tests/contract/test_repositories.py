"""The contracts of the repository ports (``mpi.ports``, ``mpi.archive.ports``), on every implementation: the in-memory
fakes of the unit tests and SQL on SQLite and PostgreSQL.

The same tests run on each, so a fake cannot drift from what the database does: where they
disagree, the SQL adapter is the reference. What only SQL can show (locks across connections,
SKIP LOCKED, how rows are written) is tested in ``tests/integration/test_sql_repositories.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest

from adapters.sql.engine import create_engine_for
from mpi.archive import (
    ArchivedPatient,
    ArchiveUnitOfWork,
    SeriesSummary,
    StoredInstance,
    StoredSeries,
    StoredStudy,
    StudyFilter,
    StudySummary,
)
from mpi.errors import ConcurrencyError
from mpi.events import PersonCreated, PersonIdentifiersChanged, RecordRegistered
from mpi.matching.profile import blocking_keys, profile_of
from mpi.model import (
    Identifier,
    JournalStatus,
    Link,
    LinkMethod,
    Person,
    PersonStatus,
    RecordStatus,
    ReviewDecision,
    ReviewStatus,
    ReviewTask,
    master_id_of,
)
from mpi.ports import PersonQuery
from tests.conftest import DATABASE_KINDS, fresh_database, sql_uow_factory
from tests.entities import INS_A, INS_B, NOW, add_person, journal_entry, make_record
from tests.fakes import fake_uow_factory

PARIS_SUMMER = timezone(timedelta(hours=2))

UowFactory = Callable[..., ArchiveUnitOfWork]


@pytest.fixture(params=["fake", *DATABASE_KINDS])
def uow_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UowFactory]:
    """Units of work of each implementation, on an empty store holding the authorities of
    ``fixtures/authorities.toml``: the fakes, and a fresh database of each kind (replaces
    conftest's ``uow_factory``, which has the databases only)."""
    if request.param == "fake":
        yield fake_uow_factory()
        return
    engine = create_engine_for(fresh_database(request, request.param, tmp_path))
    try:
        yield sql_uow_factory(engine)
    finally:
        engine.dispose()


# -- records -------------------------------------------------------------------------------


def test_add_assigns_an_id_and_version_one(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        first, second = make_record("1"), make_record("2")
        uow.records.add(first)
        uow.records.add(second)
        uow.commit()
    assert (first.version, second.version) == (1, 1)
    assert first.id is not None and second.id == first.id + 1
    with uow_factory(read_only=True) as uow:
        assert uow.records.get(first.id) == first
        assert uow.records.get(9999) is None
        assert [v["version"] for v in uow.records.history(first.id)] == [1]


def test_a_second_record_with_the_same_identifier_is_a_conflict(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        uow.records.add(make_record("1"))
        uow.records.add(make_record("1", "ICL"))  # the same value in another domain is another
        uow.commit()
    with uow_factory() as uow, pytest.raises(ConcurrencyError):
        uow.records.add(make_record("1"))


def test_adding_a_stored_record_again_is_refused(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        record = make_record("1")
        uow.records.add(record)
        with pytest.raises(ValueError):
            uow.records.add(record)
        with pytest.raises(ValueError):
            uow.records.save(make_record("2"))  # never added


def test_every_demographic_field_round_trips(uow_factory: UowFactory) -> None:
    record = make_record(
        "100234",
        ins=INS_A,
        reliability=("VALI", "PROV"),
        birth_family_name="Lefèvre-d'Œuf",
        used_family_name="Martin",
        given_names=("Élodie", "Marie"),
        used_given_name="Lodie",
        birth_date=date(1980, 1, 2),
        sex="F",
        birthplace="54395",
        street="1 rue Stanislas",
        city="Nancy",
        postcode="54000",
        country="FRA",
        phone="+33383000000",
        death_date=date(2020, 5, 6),
    )
    record.last_activity = datetime(2024, 2, 1, 9, 30, tzinfo=PARIS_SUMMER)
    with uow_factory() as uow:
        uow.records.add(record)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        stored = uow.records.by_identifier(Identifier("CHRU", "100234"))
    assert stored == record
    assert stored is not None and stored.last_activity is not None
    assert stored.last_activity.tzinfo == UTC
    assert stored.last_activity == datetime(2024, 2, 1, 7, 30, tzinfo=UTC)


def test_save_keeps_every_version_in_the_history(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        record = make_record("1", birth_family_name="Durand", given_names=("Paul",))
        uow.records.add(record)
        uow.commit()
    assert record.id is not None
    with uow_factory() as uow:
        loaded = uow.records.get(record.id)
        assert loaded is not None
        loaded.demographics = loaded.demographics.apply({"birth_family_name": "Dupont"})
        loaded.ins, loaded.reliability = INS_A, ("VALI",)
        loaded.updated_at = NOW + timedelta(hours=1)
        uow.records.save(loaded)
        assert loaded.version == 2
        uow.commit()
    with uow_factory(read_only=True) as uow:
        history = uow.records.history(record.id)
        assert uow.records.get(record.id) == loaded
    assert [v["version"] for v in history] == [1, 2]
    assert [v["recorded_at"] for v in history] == [NOW, NOW + timedelta(hours=1)]
    first, second = history
    assert first["identifier"] == "CHRU|1" and first["ins"] is None
    assert cast(dict[str, Any], first["demographics"])["birth_family_name"] == "Durand"
    assert cast(dict[str, Any], second["demographics"])["birth_family_name"] == "Dupont"
    assert second["ins"] == str(INS_A) and second["reliability"] == ["VALI"]
    assert second["status"] == "active" and second["retired_into"] is None


def test_a_record_read_and_changed_is_unchanged_until_saved(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        record = make_record("1", birth_family_name="Durand")
        uow.records.add(record)
        record.demographics = record.demographics.apply({"birth_family_name": "Dupont"})
        loaded = uow.records.get(record.id or 0)
        assert loaded is not None and loaded.demographics.birth_family_name == "Durand"
        loaded.status = RecordStatus.DELETED
        again = uow.records.by_identifier(record.identifier)
        assert again is not None
        assert (again.demographics.birth_family_name, again.status, again.version) == (
            "Durand", RecordStatus.ACTIVE, 1)


def test_saving_a_stale_copy_is_a_conflict(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        record = make_record("1")
        uow.records.add(record)
        uow.commit()
    assert record.id is not None
    with uow_factory() as uow:
        fresh, stale = uow.records.get(record.id), uow.records.get(record.id)
        assert fresh is not None and stale is not None
        uow.records.save(fresh)
        with pytest.raises(ConcurrencyError):
            uow.records.save(stale)


def test_lookups_by_identifier_retirement_ins_and_person(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        survivor = make_record("1", ins=INS_A, reliability=("VALI",))
        retired = make_record("2", ins=INS_A, reliability=("VALI",))
        provisional = make_record("3", ins=INS_A, reliability=("PROV",))
        other_domain = make_record("1", "ICL", ins=INS_A, reliability=("QUAL",))
        person_id = add_person(uow, survivor, retired, provisional)
        add_person(uow, other_domain)
        retired.status, retired.retired_into = RecordStatus.RETIRED, survivor.id
        uow.records.save(retired)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        found = uow.records.by_identifier(Identifier("CHRU", "2"))
        assert found is not None and found.status is RecordStatus.RETIRED
        assert uow.records.by_identifier(Identifier("CHRU", "9")) is None
        assert uow.records.retired_into(survivor.id or 0) == [found]
        assert uow.records.retired_into(retired.id or 0) == []
        qualified = uow.records.with_qualified_ins(INS_A)
        assert [r.identifier for r in qualified] == [survivor.identifier, other_domain.identifier]
        assert uow.records.with_qualified_ins(INS_B) == []
        linked = uow.records.linked_to(person_id)
        assert [r.id for r in linked] == [survivor.id, retired.id, provisional.id]


def test_linked_records_come_by_ascending_id_whatever_the_order_of_their_links(
    uow_factory: UowFactory,
) -> None:
    with uow_factory() as uow:
        first, second = make_record("1"), make_record("2")
        uow.records.add(first)
        uow.records.add(second)
        person = add_person(uow, second, first)
        assert [r.id for r in uow.records.linked_to(person)] == [first.id, second.id]
        assert [link.record_id for link in uow.links.of_person(person)] == [first.id, second.id]
        assert uow.records.linked_to(person + 100) == []


def test_identifiers_of_a_person_are_its_active_records_and_their_qualified_ins(
    uow_factory: UowFactory,
) -> None:
    with uow_factory() as uow:
        retired = make_record("2", ins=INS_B, reliability=("VALI",))
        person = add_person(
            uow,
            make_record("1", ins=INS_A, reliability=("VALI",)),
            make_record("4", "MRUN", ins=INS_B, reliability=("PROV",)),  # not qualified
            retired,
        )
        retired.status = RecordStatus.RETIRED
        uow.records.save(retired)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert sorted(uow.records.identifiers_of(person)) == sorted(
            [Identifier("CHRU", "1"), INS_A, Identifier("MRUN", "4")])
        assert uow.records.identifiers_of(person + 100) == []


def test_a_sample_draws_active_records_only(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        records = [make_record(str(n)) for n in range(4)]
        add_person(uow, *records)
        records[0].status = RecordStatus.DELETED
        uow.records.save(records[0])
        uow.commit()
    active = {r.identifier for r in records[1:]}
    with uow_factory(read_only=True) as uow:
        assert {r.identifier for r in uow.records.sample(10)} == active
        two = uow.records.sample(2)
        assert len(two) == 2 and {r.identifier for r in two} <= active


TRAITS: dict[str, Any] = dict(birth_family_name="DUPONT", given_names=("Marie",),
                              birth_date=date(1980, 1, 2), sex="F", birthplace="54395")


@pytest.fixture
def blocks(uow_factory: UowFactory) -> dict[str, tuple[int, int]]:
    """Records sharing blocking keys with a DUPONT Marie born on 1980-01-02 in Nancy, by
    nickname: (record id, person id)."""
    with uow_factory() as uow:
        records = {
            "same": make_record("1", **TRAITS),  # every key
            "other_site": make_record("2", "ICL", **TRAITS),
            # date_sex only
            "same_day": make_record("3", "MRUN", birth_family_name="MARTIN",
                                    given_names=("Zoé",), birth_date=date(1980, 1, 2), sex="F"),
            # name_year only, through her used name
            "married": make_record("4", "CCEG", birth_family_name="LEROY",
                                   used_family_name="DUPONT", given_names=("Anne",),
                                   birth_date=date(1980, 6, 6), sex="F"),
            "stranger": make_record("5", birth_family_name="KOWALSKI", given_names=("Jan",),
                                    birth_date=date(1950, 5, 5), sex="M"),
            "retired": make_record("6", **TRAITS),
            "merged_away": make_record("7", **TRAITS),
        }
        people = {name: add_person(uow, record) for name, record in records.items()}
        retired = records["retired"]
        retired.status = RecordStatus.RETIRED
        uow.records.save(retired)
        merged = uow.persons.get(people["merged_away"])
        assert merged is not None
        merged.status, merged.merged_into = PersonStatus.MERGED, people["same"]
        uow.persons.save(merged)
        uow.commit()
    return {name: (record.id or 0, people[name]) for name, record in records.items()}


def dupont_keys() -> dict[str, str]:
    query = make_record("query", **TRAITS)
    return {name: value for name, value in blocking_keys(profile_of(query)).items() if value}


def found_names(found: list[tuple[Any, int]], blocks: dict[str, tuple[int, int]]) -> list[str]:
    by_ids = {ids: name for name, ids in blocks.items()}
    return sorted(by_ids[(record.id, person_id)] for record, person_id in found)


def test_candidates_share_a_blocking_key_and_are_active_records_of_active_persons(
    uow_factory: UowFactory, blocks: dict[str, tuple[int, int]]
) -> None:
    with uow_factory(read_only=True) as uow:
        found, oversized = uow.records.candidates(dupont_keys(), 10)
        assert found_names(found, blocks) == ["married", "other_site", "same", "same_day"]
        assert oversized == []
        same = next(record for record, _ in found if record.id == blocks["same"][0])
        assert same == uow.records.get(blocks["same"][0])
        found, _ = uow.records.candidates(dupont_keys(), 10, exclude=blocks["same"][0])
        assert found_names(found, blocks) == ["married", "other_site", "same_day"]
        assert uow.records.candidates({}, 10) == ([], [])


def test_a_block_over_the_cap_is_skipped_and_named(
    uow_factory: UowFactory, blocks: dict[str, tuple[int, int]]
) -> None:
    # A block counts every record holding the key, the retired one and the merged person's
    # too: date_sex and name_year hold five records each, given_family and place_date four.
    with uow_factory(read_only=True) as uow:
        found, oversized = uow.records.candidates(dupont_keys(), 4)
        assert found_names(found, blocks) == ["other_site", "same"]
        assert oversized == ["date_sex", "name_year"]
        assert uow.records.candidates(dupont_keys(), 3) == (
            [], ["date_sex", "given_family", "name_year", "place_date"])


# -- persons and search --------------------------------------------------------------------


def test_persons_are_added_read_and_saved(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        survivor, merged = Person(created_at=NOW), Person()
        uow.persons.add(survivor)
        uow.persons.add(merged)
        assert merged.created_at is not None and merged.created_at.tzinfo is not None
        merged.status, merged.merged_into = PersonStatus.MERGED, survivor.id
        uow.persons.save(merged)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.persons.get(survivor.id or 0) == survivor
        assert uow.persons.get(merged.id or 0) == merged
        assert uow.persons.get(12345) is None


def test_adding_a_stored_person_again_or_saving_an_unknown_one_is_refused(
    uow_factory: UowFactory,
) -> None:
    with uow_factory() as uow:
        person = Person(created_at=NOW)
        uow.persons.add(person)
        with pytest.raises(ValueError):
            uow.persons.add(person)
        with pytest.raises(ValueError):
            uow.persons.save(Person(id=(person.id or 0) + 100))
        with pytest.raises(ValueError):
            uow.persons.save(Person())


@pytest.fixture
def population(uow_factory: UowFactory) -> dict[str, int]:
    """Persons to search, by nickname."""
    with uow_factory() as uow:
        people = {
            "elodie": add_person(
                uow,
                make_record(
                    "1",
                    ins=INS_A,
                    reliability=("VALI",),
                    birth_family_name="Lefèvre",
                    used_family_name="Martin-Dupont",
                    given_names=("Élodie", "Marie"),
                    birth_date=date(1980, 1, 2),
                    sex="F",
                    postcode="54000",
                    city="Nancy",
                    phone="0383112233",
                ),
                make_record(
                    "4",
                    "MRUN",
                    birth_family_name="LEFEVRE",
                    given_names=("Elodie",),
                    birth_date=date(1980, 1, 2),
                    sex="F",
                ),
            ),
            "jean": add_person(
                uow,
                make_record(
                    "2",
                    "ICL",
                    ins=INS_B,
                    reliability=("PROV",),
                    birth_family_name="Lefebvre",
                    given_names=("Jean",),
                    birth_date=date(1975, 5, 5),
                    sex="M",
                    postcode="57000",
                    city="Metz",
                ),
            ),
            "underscore": add_person(uow, make_record("5", birth_family_name="LEF_X")),
        }
        retired = make_record("3", birth_family_name="Lefèvre", given_names=("Élodie",))
        people["retired"] = add_person(uow, retired)
        retired.status = RecordStatus.RETIRED
        uow.records.save(retired)
        merged = add_person(uow, make_record("6", "CCEG", birth_family_name="Lefèvre"))
        person = uow.persons.get(merged)
        assert person is not None
        person.status, person.merged_into = PersonStatus.MERGED, people["elodie"]
        uow.persons.save(person)
        people["merged"] = merged
        uow.commit()
    return people


def test_search_by_person_numbers_and_status(
    uow_factory: UowFactory, population: dict[str, int]
) -> None:
    elodie, merged = population["elodie"], population["merged"]
    with uow_factory(read_only=True) as uow:
        assert uow.persons.search(PersonQuery(person_ids=(elodie, merged)), 0, 10) == (
            [elodie], 1)
        assert uow.persons.search(PersonQuery(person_ids=()), 0, 10) == ([], 0)
        assert uow.persons.search(
            PersonQuery(person_ids=(elodie, merged), active=False), 0, 10) == ([merged], 1)
        # merged persons have no records left: a demographic criterion finds none of them
        assert uow.persons.search(
            PersonQuery(person_ids=(merged,), family="lef*", active=False), 0, 10) == ([], 0)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (PersonQuery(family="lefevre"), ["elodie"]),
        (PersonQuery(family="LEFÈVRE "), ["elodie"]),
        (PersonQuery(family="Martin Dupont"), ["elodie"]),
        (PersonQuery(family="lef*"), ["elodie", "jean", "underscore"]),
        (PersonQuery(family="lef_*"), ["underscore"]),
        (PersonQuery(family="martin-d*"), ["elodie"]),
        (PersonQuery(family="lefebvre"), ["jean"]),
        (PersonQuery(given="elodie"), ["elodie"]),
        (PersonQuery(given="mar*"), []),  # only the first given name is searched
        (PersonQuery(family="lef*", given="j*"), ["jean"]),
        (PersonQuery(birth_date=date(1980, 1, 2)), ["elodie"]),
        (PersonQuery(family="lef*", sex="M"), ["jean"]),
        (PersonQuery(postcode="57000"), ["jean"]),
        (PersonQuery(city="NANCY"), ["elodie"]),
        # every criterion applies to the same record: MRUN|4 has no postcode
        (PersonQuery(family="lefevre", postcode="54000", given="elodie"), ["elodie"]),
        (PersonQuery(identifier=Identifier("MRUN", "4"), postcode="54000"), []),
        (PersonQuery(identifier=Identifier("MRUN", "4")), ["elodie"]),
        (PersonQuery(identifier=INS_A), ["elodie"]),
        (PersonQuery(identifier=INS_B), []),  # not qualified
        (PersonQuery(identifier=Identifier("CHRU", "3")), []),  # retired record
        (PersonQuery(identifier=Identifier("GCS", "00000000x1")), []),
        (PersonQuery(family="*"), []),
        (PersonQuery(), []),
        (PersonQuery(family_exact="Lefèvre"), ["elodie"]),
        (PersonQuery(family_exact="LEFEVRE"), ["elodie"]),  # MRUN|4's birth name as written
        (PersonQuery(family_exact="lefèvre"), []),
        (PersonQuery(family_exact="Martin-Dupont"), ["elodie"]),
        (PersonQuery(given_exact="Élodie"), ["elodie"]),
        (PersonQuery(given_exact="Elodie", postcode="54000"), []),  # on two records
        (PersonQuery(given_exact="Marie"), []),  # only the first given name
        (PersonQuery(postcode="5*"), ["elodie", "jean"]),
        (PersonQuery(phone="0383112233"), ["elodie"]),
        (PersonQuery(phone="0383*"), ["elodie"]),
        (PersonQuery(phone="0383"), []),
        (PersonQuery(domain="MRUN"), ["elodie"]),
        (PersonQuery(domain="ICL", family="lef*"), ["jean"]),
        # the domain is held on any record of the person, not only the one matching the rest
        (PersonQuery(domain="MRUN", postcode="54000"), ["elodie"]),
        (PersonQuery(domain="INS-NIR"), ["elodie"]),  # qualified INS only
        (PersonQuery(domain="CCEG"), []),  # a merged person's record
        (PersonQuery(domain="GCS", family="lefebvre"), ["jean"]),
        # a criterion with nothing searchable left is ignored, the others still apply
        (PersonQuery(family="*", sex="M"), ["jean"]),
        (PersonQuery(family="lef*", postcode="*"), ["elodie", "jean", "underscore"]),
        (PersonQuery(postcode="*", phone=" "), []),
    ],
)
def test_search(
    uow_factory: UowFactory,
    population: dict[str, int],
    query: PersonQuery,
    expected: list[str],
) -> None:
    with uow_factory(read_only=True) as uow:
        ids, total = uow.persons.search(query, 0, 10)
    assert ids == sorted(population[name] for name in expected)
    assert total == len(expected)


def test_search_by_master_identifier(
    uow_factory: UowFactory, population: dict[str, int]
) -> None:
    with uow_factory(read_only=True) as uow:
        for name in ("jean", "elodie"):
            master = Identifier("GCS", master_id_of(population[name]))
            assert uow.persons.search(PersonQuery(identifier=master), 0, 10) == (
                [population[name]],
                1,
            )
        merged = Identifier("GCS", master_id_of(population["merged"]))
        assert uow.persons.search(PersonQuery(identifier=merged), 0, 10) == ([], 0)


def test_search_pages_by_ascending_person_id(
    uow_factory: UowFactory, population: dict[str, int]
) -> None:
    everyone = sorted(population[name] for name in ("elodie", "jean", "underscore"))
    query = PersonQuery(family="LEF*")
    with uow_factory(read_only=True) as uow:
        assert uow.persons.search(query, 0, 2) == (everyone[:2], 3)
        assert uow.persons.search(query, 2, 2) == (everyone[2:], 3)
        assert uow.persons.search(query, 3, 2) == ([], 3)


# -- links and separations -----------------------------------------------------------------


def test_link_save_inserts_then_replaces(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        record, other = make_record("1"), make_record("2")
        first = add_person(uow, record, other)
        second = add_person(uow)
        assert record.id is not None and other.id is not None
        assert uow.links.for_record(record.id) == Link(
            record.id, first, LinkMethod.NEW, decided_at=NOW
        )
        replacement = Link(record.id, second, LinkMethod.AUTO, 0.93, {"name": 0.8}, "matcher")
        uow.links.save(replacement)
        assert replacement.decided_at is not None
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.links.for_record(record.id) == replacement
        assert uow.links.of_person(second) == [replacement]
        assert [link.record_id for link in uow.links.of_person(first)] == [other.id]
        assert uow.links.for_record(9999) is None


def test_separations(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        records = [make_record(str(n)) for n in range(4)]
        add_person(uow, *records)
        a, b, c, d = (r.id or 0 for r in records)
        uow.separations.add(c, a, "manual unlink", "alice")
        uow.separations.add(a, c, "again", "bob")  # same pair: unchanged
        with pytest.raises(ValueError):
            uow.separations.add(b, b, "itself", "alice")
        assert uow.separations.exists_between([a], [c])
        assert uow.separations.exists_between([c, d], [b, a])
        assert not uow.separations.exists_between([a, b], [b, d])
        assert not uow.separations.exists_between([], [a, c])
        uow.commit()
    with uow_factory() as uow:
        assert uow.separations.exists_between([c], [a])
        uow.separations.remove(a, c)
        assert not uow.separations.exists_between([a], [c])
        uow.commit()


# -- reviews and models --------------------------------------------------------------------


def test_review_tasks_are_listed_oldest_first_and_an_open_one_is_not_duplicated(
    uow_factory: UowFactory,
) -> None:
    with uow_factory() as uow:
        record, candidate, other = make_record("1"), make_record("2"), make_record("3")
        add_person(uow, record)
        candidate_person, other_person = add_person(uow, candidate), add_person(uow, other)
        assert record.id is not None and other.id is not None
        later = ReviewTask(record.id, candidate_person, candidate.id, 0.8,
                           {"name": "close", "ranks": [1, 2]}, created_at=NOW + timedelta(hours=1))
        earlier = ReviewTask(other.id, candidate_person, candidate.id, 0.7, {}, created_at=NOW)
        uow.reviews.add(later)
        uow.reviews.add(earlier)
        again = ReviewTask(record.id, candidate_person, candidate.id, 0.9, {})
        uow.reviews.add(again)
        assert again.id == later.id
        newest = ReviewTask(record.id, other_person, other.id, 0.6, {})
        uow.reviews.add(newest)
        assert newest.created_at is not None and newest.created_at.tzinfo is not None
        uow.commit()
    assert later.id is not None
    with uow_factory() as uow:
        assert uow.reviews.get(later.id) == later
        assert uow.reviews.get(later.id + 1000) is None
        assert [t.id for t in uow.reviews.open_for_record(record.id)] == [later.id, newest.id]
        # oldest first by creation, whatever the order they were added in
        assert uow.reviews.list(None, 0, 10) == ([earlier, later, newest], 3)
        assert uow.reviews.list(None, 1, 1) == ([later], 3)
        task = uow.reviews.get(later.id)
        assert task is not None
        task.status, task.decision = ReviewStatus.DECIDED, ReviewDecision.KEEP_APART
        task.decided_at, task.decided_by, task.reason = NOW, "alice", "twins"
        uow.reviews.save(task)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.reviews.get(later.id) == task
        assert uow.reviews.list(ReviewStatus.OPEN, 0, 10) == ([earlier, newest], 2)
        assert uow.reviews.list(ReviewStatus.DECIDED, 0, 10) == ([task], 1)
        assert uow.reviews.open_for_record(record.id) == [newest]


def test_saving_a_review_task_never_added_is_refused(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        record = make_record("1")
        person = add_person(uow, record)
        task = ReviewTask(record.id or 0, person, None, 0.5, {})
        with pytest.raises(ValueError):
            uow.reviews.save(task)
        task.id = 12345
        with pytest.raises(ValueError):
            uow.reviews.save(task)


def test_one_model_version_is_in_force(uow_factory: UowFactory) -> None:
    first = {"thresholds": {"link": 0.99}, "fields": {"name": [0.9, 0.1]}}
    second = {"thresholds": {"link": 0.98}}
    with uow_factory() as uow:
        assert uow.models.active() is None and uow.models.versions() == []
        uow.models.add("v1", first, activate=False)
        assert uow.models.active() is None  # the shipped model stays in force
        uow.models.add("v2", second, activate=True)
        uow.commit()
    with uow_factory() as uow:
        assert uow.models.active() == ("v2", second)
        uow.models.add("v3", first, activate=True)
        uow.models.add("v4", second, activate=False)
        assert uow.models.active() == ("v3", first)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        versions = uow.models.versions()
    assert [(version, active) for version, _, active in versions] == [
        ("v4", False), ("v3", True), ("v2", False), ("v1", False)]
    assert all(created.tzinfo is not None for _, created, _ in versions)


def test_a_model_version_stored_twice_is_a_conflict(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        uow.models.add("v1", {}, activate=True)
        uow.commit()
    with uow_factory() as uow, pytest.raises(ConcurrencyError):
        uow.models.add("v1", {"other": True}, activate=False)


# -- journal -------------------------------------------------------------------------------


def test_journal_add_find_save_and_list(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        applied, failed = journal_entry("C1"), journal_entry("C2")
        unreadable = journal_entry(None, sender=None)
        unreadable2 = journal_entry(None, sender=None)
        for entry in (applied, failed, unreadable, unreadable2):
            uow.journal.add(entry)
        failed.status, failed.ack_code = JournalStatus.ERROR, "AE"
        failed.error_code, failed.error_text, failed.reply = 204, "unknown", "MSH|ACK"
        uow.journal.save(failed)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.journal.find("CHRU", "C1") == applied
        assert uow.journal.find("CHRU", "C9") is None
        assert uow.journal.get(failed.id or 0) == failed
        assert uow.journal.get(12345) is None
        assert [e.id for e in uow.journal.list()] == [
            unreadable2.id,
            unreadable.id,
            failed.id,
            applied.id,
        ]
        assert uow.journal.list([JournalStatus.ERROR]) == [failed]
        assert [e.id for e in uow.journal.list(limit=1)] == [unreadable2.id]
        assert uow.journal.list([]) == []


def test_journal_duplicate_is_a_conflict_and_the_transaction_goes_on(
    uow_factory: UowFactory,
) -> None:
    with uow_factory() as uow:
        uow.journal.add(journal_entry("C1"))
        uow.commit()
    with uow_factory() as uow:
        person = add_person(uow)
        with pytest.raises(ConcurrencyError):
            uow.journal.add(journal_entry("C1"))
        later = journal_entry("C2")
        uow.journal.add(later)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.persons.get(person) is not None
        assert uow.journal.find("CHRU", "C2") == later
        assert len(uow.journal.list()) == 2


def test_the_same_control_id_from_another_sender_is_another_message(
    uow_factory: UowFactory,
) -> None:
    with uow_factory() as uow:
        uow.journal.add(journal_entry("C1"))
        other = journal_entry("C1", sender="ICL")
        uow.journal.add(other)
        with pytest.raises(ConcurrencyError):  # journaled earlier in the same transaction
            uow.journal.add(journal_entry("C1"))
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.journal.find("ICL", "C1") == other
        assert len(uow.journal.list()) == 2


def test_a_journal_entry_is_added_once_and_saved_only_once_added(
    uow_factory: UowFactory,
) -> None:
    with uow_factory() as uow:
        entry = journal_entry("C1")
        with pytest.raises(ValueError):
            uow.journal.save(entry)
        uow.journal.add(entry)
        with pytest.raises(ValueError):
            uow.journal.add(entry)


# -- outbox --------------------------------------------------------------------------------


def test_events_are_written_at_commit_and_claimed_oldest_first(uow_factory: UowFactory) -> None:
    events = [
        PersonCreated(1),
        RecordRegistered(7, Identifier("CHRU", "1")),
        PersonIdentifiersChanged(1, frozenset(), frozenset({INS_A})),
    ]
    with uow_factory() as uow:
        for event in events:
            uow.outbox.add(event)
        assert uow.outbox.pending_count() == 0  # written at commit
        with uow_factory(read_only=True) as other:
            assert other.outbox.pending_count() == 0
        uow.commit()
    with uow_factory() as uow:
        assert uow.outbox.pending_count() == 3
        claimed = uow.outbox.claim(NOW, 10)
        assert [stored.event for stored in claimed] == events
        assert [stored.attempts for stored in claimed] == [0, 0, 0]
        assert [stored.id for stored in claimed] == sorted(stored.id for stored in claimed)
        assert all(stored.occurred_at.tzinfo is not None for stored in claimed)
        assert uow.outbox.claim(NOW, 2) == claimed[:2]


def test_a_failed_event_is_due_again_at_its_retry_and_a_processed_one_never(
    uow_factory: UowFactory,
) -> None:
    with uow_factory() as uow:
        for person in (1, 2, 3):
            uow.outbox.add(PersonCreated(person))
        uow.commit()
    retry_at = NOW + timedelta(minutes=1)
    with uow_factory() as uow:
        first, second, third = uow.outbox.claim(NOW, 10)
        uow.outbox.mark_failed(first.id, 1, retry_at, "RuntimeError: consumer down")
        uow.outbox.mark_processed([second.id], NOW)
        uow.commit()
    with uow_factory() as uow:
        assert uow.outbox.pending_count() == 2
        assert [stored.id for stored in uow.outbox.claim(NOW, 10)] == [third.id]
        retried = uow.outbox.claim(retry_at, 10)
        # still in the order they were written, the retried one first
        assert [(stored.id, stored.attempts) for stored in retried] == [(first.id, 1),
                                                                         (third.id, 0)]
        uow.outbox.mark_processed([first.id, third.id], retry_at)
        uow.outbox.mark_processed([], retry_at)
        uow.commit()
    with uow_factory() as uow:  # claiming locks: not in a read-only unit of work
        assert uow.outbox.pending_count() == 0
        assert uow.outbox.claim(NOW + timedelta(days=365), 10) == []


def test_an_event_marked_in_a_unit_of_work_left_uncommitted_stays_pending(
    uow_factory: UowFactory,
) -> None:
    with uow_factory() as uow:
        uow.outbox.add(PersonCreated(1))
        uow.commit()
    with uow_factory() as uow:
        (claimed,) = uow.outbox.claim(NOW, 10)
        uow.outbox.mark_processed([claimed.id], NOW)
        assert uow.outbox.pending_count() == 0
    with uow_factory() as uow:
        assert uow.outbox.claim(NOW, 10) == [claimed]


# -- notifications -------------------------------------------------------------------------


def test_notification_cycle(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        first, second = add_person(uow), add_person(uow)
        uow.notifications.enqueue("PACS", first, NOW + timedelta(minutes=1))
        uow.notifications.enqueue("PACS", first, NOW)  # joins the one above, earliest due
        uow.notifications.enqueue("PACS", second, NOW + timedelta(hours=1))
        uow.notifications.enqueue("RIS", first, NOW)
        uow.commit()
    with uow_factory() as uow:
        uow.notifications.enqueue("PACS", first, NOW)  # one is already pending
        uow.commit()
    with uow_factory() as uow:
        assert uow.notifications.pending_count("PACS") == 2
        claimed = uow.notifications.claim_due("PACS", NOW, 10)
        assert [(n.consumer, n.person_id, n.attempts) for n in claimed] == [("PACS", first, 0)]
        retry_at = NOW + timedelta(minutes=5)
        uow.notifications.mark_failed(claimed[0].id, 1, retry_at, "connection refused")
        uow.commit()
    with uow_factory() as uow:
        assert uow.notifications.claim_due("PACS", NOW, 10) == []
        claimed = uow.notifications.claim_due("PACS", retry_at + timedelta(hours=1), 10)
        assert [(n.person_id, n.attempts) for n in claimed] == [(first, 1), (second, 0)]
        assert uow.notifications.claim_due("PACS", retry_at + timedelta(hours=1), 1) == [claimed[0]]
        uow.notifications.mark_sent(claimed[0].id, retry_at)
        uow.commit()
    with uow_factory() as uow:
        assert uow.notifications.pending_count("PACS") == 1
        uow.notifications.enqueue("PACS", first, NOW)  # the earlier one was sent: a new row
        assert uow.notifications.pending_count("PACS") == 2
        assert uow.notifications.pending_count("RIS") == 1
        uow.commit()


def test_notifications_are_claimed_by_due_time_then_in_order(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        late, early, also_early = add_person(uow), add_person(uow), add_person(uow)
        uow.notifications.enqueue("PACS", late, NOW + timedelta(hours=2))
        uow.notifications.enqueue("PACS", also_early, NOW)
        uow.notifications.enqueue("PACS", early, NOW)
        uow.commit()
    with uow_factory() as uow:
        claimed = uow.notifications.claim_due("PACS", NOW + timedelta(hours=3), 10)
        assert [n.person_id for n in claimed] == [early, also_early, late]
        assert uow.notifications.claim_due("RIS", NOW + timedelta(hours=3), 10) == []


# -- the unit of work ----------------------------------------------------------------------


def test_a_change_is_seen_by_other_units_of_work_once_committed(uow_factory: UowFactory) -> None:
    with uow_factory() as writer:
        person = add_person(writer, make_record("1"))
        with uow_factory(read_only=True) as reader:
            assert reader.records.by_identifier(Identifier("CHRU", "1")) is None
            assert reader.persons.get(person) is None
        writer.commit()
        with uow_factory(read_only=True) as reader:
            assert reader.records.by_identifier(Identifier("CHRU", "1")) is not None
        # the unit of work goes on after a commit, in a new transaction
        add_person(writer, make_record("2"))
        writer.commit()
    with uow_factory(read_only=True) as reader:
        assert reader.records.by_identifier(Identifier("CHRU", "2")) is not None


def test_leaving_without_commit_rolls_everything_back(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        person = add_person(uow, make_record("1"))
        uow.journal.add(journal_entry("C1"))
        uow.outbox.add(PersonCreated(person))
        uow.notifications.enqueue("PACS", person, NOW)
    with pytest.raises(RuntimeError), uow_factory() as uow:
        add_person(uow, make_record("2"))
        uow.outbox.add(PersonCreated(person))
        raise RuntimeError("use case failed")
    with uow_factory() as uow:
        add_person(uow, make_record("3"))
        uow.outbox.add(PersonCreated(person))
        uow.rollback()
        kept = add_person(uow, make_record("4"))
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("CHRU", "1")) is None
        assert uow.records.by_identifier(Identifier("CHRU", "4")) is not None
        assert uow.journal.list() == []
        assert uow.notifications.pending_count("PACS") == 0
        assert uow.persons.get(kept) is not None
        # no event of the rolled-back units of work was written, and only record 4 was
        assert uow.outbox.pending_count() == 0
        assert [r.identifier.value for r in uow.records.sample(10)] == ["4"]


def test_lock_takes_any_keys_and_the_unit_of_work_goes_on(uow_factory: UowFactory) -> None:
    # What a lock serializes needs two connections: see test_sql_repositories.py.
    with uow_factory() as uow:
        uow.lock(["record:CHRU|1", "ins:INS-NIR|1"])
        uow.lock(key for key in ("record:CHRU|1", "record:CHRU|2"))  # again, and a generator
        uow.lock([])
        add_person(uow, make_record("1"))
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("CHRU", "1")) is not None


# -- the archive's index -------------------------------------------------------------------

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_instance(series: StoredSeries, sop: str, number: int | None,
                 **changes: Any) -> StoredInstance:
    values: dict[str, Any] = {
        "sop_instance_uid": sop, "sop_class_uid": CT_IMAGE, "series_id": series.id,
        "transfer_syntax_uid": EXPLICIT_LITTLE_ENDIAN,
        "blob_key": f"{series.series_instance_uid}/{sop}.{sha(sop)[:16]}.dcm",
        "size": 1000 + len(sop), "sha256": sha(sop), "received_at": NOW, "source": "CHRU",
        "instance_number": number,
    }
    values.update(changes)
    return StoredInstance(**values)


def received(authority: str, patient_id: str, record_id: int) -> ArchivedPatient:
    return ArchivedPatient(authority, patient_id, record_id, family_name="DUPONT",
                           given_names=("HELENE",), birth_date=date(1980, 1, 2), sex="F",
                           first_received_at=NOW, last_received_at=NOW)


@dataclass
class Imaging:
    """Studies of two persons: Hélène's from the CHRU and the maternity, Jean's from the
    ICL."""

    helene: int
    jean: int
    records: dict[str, int]  # the record of each patient as received ("CHRU|1": id)
    instances: dict[str, StoredInstance]  # by SOP Instance UID, as added


@pytest.fixture
def imaging(uow_factory: UowFactory) -> Imaging:
    with uow_factory() as uow:
        chru, mrun, icl = make_record("1"), make_record("7", "MRUN"), make_record("2", "ICL")
        helene, jean = add_person(uow, chru, mrun), add_person(uow, icl)
        patients = {}
        for record in (chru, mrun, icl):
            patient = received(record.identifier.authority, record.identifier.value,
                               record.id or 0)
            uow.archive.add_patient(patient)
            patients[str(record.identifier)] = patient
        instances: dict[str, StoredInstance] = {}

        def study(uid: str, patient: str, study_date: date, accession: str,
                  *series: tuple[str, str, int, tuple[tuple[str, int], ...]]) -> None:
            stored = StoredStudy(uid, patients[patient].id or 0, study_date, "093000", accession,
                                 "1", "Thorax", first_received_at=NOW,
                                 last_received_at=NOW + timedelta(hours=1))
            uow.archive.add_study(stored)
            for series_uid, modality, number, members in series:
                added = StoredSeries(series_uid, stored.id or 0, modality, number, modality)
                uow.archive.add_series(added)
                for sop, instance_number in members:
                    instance = new_instance(added, sop, instance_number)
                    uow.archive.add_instance(instance)
                    instances[sop] = instance

        # In s1 the series' numbers run against their UIDs, and the instances of the CT are
        # added in reverse order: the order read back is by number.
        study("1.2.1", "CHRU|1", date(2024, 3, 1), "A1",
              ("1.2.1.2", "CT", 1, (("1.2.1.2.2", 2), ("1.2.1.2.1", 1))),
              ("1.2.1.1", "SR", 2, (("1.2.1.1.1", 1),)),
              ("1.2.1.3", "PR", 3, ()))
        study("1.2.2", "MRUN|7", date(2023, 1, 15), "A2", ("1.2.2.1", "MR", 1, (("1.2.2.1.1", 1),)))
        study("1.2.3", "ICL|2", date(2024, 3, 1), "A3", ("1.2.3.1", "CT", 1, (("1.2.3.1.1", 1),)))
        study("1.2.4", "ICL|2", date(2022, 6, 1), "A4", ("1.2.4.1", "US", 1, (("1.2.4.1.1", 1),)))
        uow.commit()
    return Imaging(helene, jean,
                   {name: patient.record_id for name, patient in patients.items()}, instances)


def test_patients_as_received_are_added_read_and_saved(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        record = make_record("1")
        add_person(uow, record)
        patient = received("CHRU", "1", record.id or 0)
        uow.archive.add_patient(patient)
        assert patient.id is not None
        uow.commit()
    with uow_factory() as uow:
        stored = uow.archive.patient(Identifier("CHRU", "1"))
        assert stored == patient
        assert uow.archive.patient(Identifier("ICL", "1")) is None
        assert stored is not None
        stored.given_names, stored.last_study_date = ("HELENE", "MARIE"), date(2024, 3, 1)
        stored.last_received_at = datetime(2024, 3, 2, 9, 0, tzinfo=PARIS_SUMMER)
        uow.archive.save_patient(stored)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        again = uow.archive.patient(Identifier("CHRU", "1"))
    assert again == stored
    assert again is not None and again.last_received_at is not None
    assert again.last_received_at.tzinfo == UTC


def test_studies_and_series_are_added_read_and_saved(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        record = make_record("1")
        add_person(uow, record)
        patient = received("CHRU", "1", record.id or 0)
        uow.archive.add_patient(patient)
        study = StoredStudy("1.2.1", patient.id or 0, date(2024, 3, 1), "093000", "A1", "7",
                            "Thorax", first_received_at=NOW, last_received_at=NOW)
        uow.archive.add_study(study)
        series = StoredSeries("1.2.1.1", study.id or 0, "CT", 3, "Axial")
        uow.archive.add_series(series)
        assert study.id is not None and series.id is not None
        uow.commit()
    with uow_factory() as uow:
        assert uow.archive.study("1.2.1") == study
        assert uow.archive.series("1.2.1.1") == series
        assert uow.archive.study("1.2.9") is None and uow.archive.series("1.2.1.9") is None
        study.last_received_at, study.description = NOW + timedelta(days=1), "Thorax TDM"
        uow.archive.save_study(study)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.archive.study("1.2.1") == study


def test_a_patient_study_series_or_instance_stored_twice_is_a_conflict(
    uow_factory: UowFactory, imaging: Imaging
) -> None:
    # A unique violation in SQL: two transactions storing the same new object, the later is
    # retried and finds the first one's. Each in its own unit of work: on PostgreSQL the
    # error ends the transaction.
    with uow_factory() as uow, pytest.raises(ConcurrencyError):
        uow.archive.add_patient(received("CHRU", "1", imaging.records["CHRU|1"]))
    with uow_factory() as uow, pytest.raises(ConcurrencyError):
        patient = uow.archive.patient(Identifier("CHRU", "1"))
        assert patient is not None
        uow.archive.add_study(StoredStudy("1.2.2", patient.id or 0, first_received_at=NOW,
                                          last_received_at=NOW))
    with uow_factory() as uow, pytest.raises(ConcurrencyError):
        study = uow.archive.study("1.2.1")
        assert study is not None
        uow.archive.add_series(StoredSeries("1.2.2.1", study.id or 0))
    with uow_factory() as uow, pytest.raises(ConcurrencyError):
        series = uow.archive.series("1.2.1.2")
        assert series is not None
        uow.archive.add_instance(new_instance(series, "1.2.3.1.1", 9, sha256=sha("other")))


def test_an_instance_is_read_with_its_study_series_and_record(
    uow_factory: UowFactory, imaging: Imaging
) -> None:
    added = imaging.instances["1.2.2.1.1"]
    assert added.id is not None
    with uow_factory(read_only=True) as uow:
        read = uow.archive.instance("1.2.2.1.1")
        assert read == dataclasses.replace(added, study_instance_uid="1.2.2",
                                           series_instance_uid="1.2.2.1",
                                           record_id=imaging.records["MRUN|7"])
        assert uow.archive.instance("1.9.9.9") is None
        assert uow.archive.instances(series_uid="1.2.2.1") == [read]


def test_has_content_knows_the_content_of_current_instances(
    uow_factory: UowFactory, imaging: Imaging
) -> None:
    with uow_factory(read_only=True) as uow:
        assert uow.archive.has_content(sha("1.2.1.2.1"))
        assert not uow.archive.has_content(sha("never stored"))


def content(instance: StoredInstance) -> tuple[object, ...]:
    """What a version of an instance holds, without where it is read from."""
    return (instance.sop_instance_uid, instance.sop_class_uid, instance.series_id,
            instance.transfer_syntax_uid, instance.blob_key, instance.size, instance.sha256,
            instance.received_at, instance.source, instance.instance_number, instance.version)


def test_a_replaced_instance_keeps_its_earlier_versions_in_its_history(
    uow_factory: UowFactory, imaging: Imaging
) -> None:
    sop = "1.2.1.2.1"
    versions = [imaging.instances[sop]]
    for version in (2, 3):
        with uow_factory() as uow:
            previous = uow.archive.instance(sop)
            assert previous is not None and previous.version == version - 1
            series = uow.archive.series("1.2.1.2")
            assert series is not None
            current = new_instance(
                series, sop, 1, sha256=sha(f"{sop} v{version}"), size=2000 + version,
                blob_key=f"1.2.1.2/{sop}.v{version}.dcm", source="ICL", version=version,
                received_at=NOW + timedelta(hours=version))
            uow.archive.replace_instance(previous, current, NOW + timedelta(hours=version))
            assert current.id == previous.id
            uow.commit()
        versions.append(current)
    with uow_factory(read_only=True) as uow:
        now = uow.archive.instance(sop)
        assert now is not None
        assert content(now) == content(versions[2]) and now.id == versions[0].id
        history = uow.archive.instance_history(sop)
        assert [content(old) for old in history] == [content(v) for v in versions[:2]]
        assert uow.archive.instance_history("1.2.1.2.2") == []
        # only the current content counts, and the instance is not counted twice
        assert uow.archive.has_content(versions[2].sha256)
        assert not uow.archive.has_content(versions[0].sha256)
        assert not uow.archive.has_content(versions[1].sha256)
        assert [i.version for i in uow.archive.instances(series_uid="1.2.1.2")] == [3, 1]
        (study,) = uow.archive.find_studies(StudyFilter(study_uids=("1.2.1",)))
        assert study.series[0].instance_count == 2


S1, S2, S3, S4 = "1.2.1", "1.2.2", "1.2.3", "1.2.4"


@pytest.mark.parametrize(
    ("persons", "criteria", "expected"),
    [
        # newest first; of two studies of one date, the one stored last first
        (None, {}, [S3, S1, S2, S4]),
        (("helene",), {}, [S1, S2]),
        ((), {}, []),
        (("helene", "jean"), {}, [S3, S1, S2, S4]),
        (None, {"study_uids": (S2, S4)}, [S2, S4]),
        (None, {"accession_number": "A1"}, [S1]),
        (None, {"accession_number": "A9"}, []),
        (None, {"date_from": date(2024, 1, 1)}, [S3, S1]),
        (None, {"date_to": date(2023, 12, 31)}, [S2, S4]),
        (None, {"date_from": date(2023, 1, 15), "date_to": date(2023, 1, 15)}, [S2]),
        (None, {"modality": "CT"}, [S3, S1]),
        (None, {"modality": "PR"}, [S1]),  # a series without instances has its modality
        (None, {"modality": "XA"}, []),
        (("jean",), {"modality": "CT"}, [S3]),
        (("helene",), {"study_uids": (S3,)}, []),
        (None, {"limit": 2}, [S3, S1]),
    ],
)
def test_find_studies(
    uow_factory: UowFactory, imaging: Imaging, persons: tuple[str, ...] | None,
    criteria: dict[str, Any], expected: list[str],
) -> None:
    person_ids = None if persons is None else tuple(getattr(imaging, p) for p in persons)
    with uow_factory(read_only=True) as uow:
        found = uow.archive.find_studies(StudyFilter(person_ids=person_ids, **criteria))
    assert [study.study_instance_uid for study in found] == expected


def test_a_study_summary_has_its_series_and_the_person_of_its_record(
    uow_factory: UowFactory, imaging: Imaging
) -> None:
    with uow_factory(read_only=True) as uow:
        (summary,) = uow.archive.find_studies(StudyFilter(study_uids=(S1,)))
    assert summary == StudySummary(
        study_instance_uid=S1, record_id=imaging.records["CHRU|1"],
        received_as=Identifier("CHRU", "1"), study_date=date(2024, 3, 1), study_time="093000",
        accession_number="A1", study_id="1", description="Thorax", first_received_at=NOW,
        last_received_at=NOW + timedelta(hours=1),
        series=(SeriesSummary("1.2.1.2", "CT", 1, "CT", 2),
                SeriesSummary("1.2.1.1", "SR", 2, "SR", 1),
                SeriesSummary("1.2.1.3", "PR", 3, "PR", 0)),
        person_id=imaging.helene,
    )


def test_studies_follow_the_link_of_the_record_they_arrived_with(
    uow_factory: UowFactory, imaging: Imaging
) -> None:
    with uow_factory() as uow:
        link = uow.links.for_record(imaging.records["MRUN|7"])
        assert link is not None
        link.person_id, link.method = imaging.jean, LinkMethod.MANUAL
        uow.links.save(link)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        helene = uow.archive.find_studies(StudyFilter(person_ids=(imaging.helene,)))
        jean = uow.archive.find_studies(StudyFilter(person_ids=(imaging.jean,)))
        assert [s.study_instance_uid for s in helene] == [S1]
        assert [(s.study_instance_uid, s.person_id) for s in jean] == [
            (S3, imaging.jean), (S2, imaging.jean), (S4, imaging.jean)]
        moved = uow.archive.instances(person_id=imaging.jean)
        assert [i.sop_instance_uid for i in moved] == ["1.2.2.1.1", "1.2.3.1.1", "1.2.4.1.1"]


ALL_INSTANCES = ["1.2.1.2.1", "1.2.1.2.2", "1.2.1.1.1", "1.2.2.1.1", "1.2.3.1.1", "1.2.4.1.1"]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        # by study UID, then series number, then instance number
        ({}, ALL_INSTANCES),
        ({"study_uid": S1}, ALL_INSTANCES[:3]),
        ({"series_uid": "1.2.1.2"}, ["1.2.1.2.1", "1.2.1.2.2"]),
        ({"study_uid": S1, "series_uid": "1.2.1.1"}, ["1.2.1.1.1"]),
        ({"study_uid": S2, "series_uid": "1.2.1.1"}, []),
        ({"sop_uids": ["1.2.4.1.1", "1.2.2.1.1"]}, ["1.2.2.1.1", "1.2.4.1.1"]),
        ({"study_uid": S1, "sop_uids": ["1.2.1.2.2", "1.2.2.1.1"]}, ["1.2.1.2.2"]),
        ({"person": "helene"}, ALL_INSTANCES[:4]),
        ({"person": "jean", "study_uid": S4}, ["1.2.4.1.1"]),
        ({"person": "jean", "study_uid": S1}, []),
        ({"limit": 2}, ALL_INSTANCES[:2]),
        ({"study_uid": "1.9"}, []),
    ],
)
def test_instances(
    uow_factory: UowFactory, imaging: Imaging, selection: dict[str, Any], expected: list[str]
) -> None:
    if "person" in selection:
        selection = {**selection, "person_id": getattr(imaging, selection["person"])}
        del selection["person"]
    with uow_factory(read_only=True) as uow:
        found = uow.archive.instances(**selection)
    assert [i.sop_instance_uid for i in found] == expected
    assert all(i.record_id is not None and i.series_instance_uid for i in found)


def test_undated_studies_come_last_and_unnumbered_series_and_instances_after_the_numbered(
    uow_factory: UowFactory,
) -> None:
    # Objects without StudyDate, SeriesNumber or InstanceNumber are common; both databases
    # must give them the same place (SQLite and PostgreSQL sort NULL at opposite ends).
    with uow_factory() as uow:
        record = make_record("1")
        person = add_person(uow, record)
        patient = received("CHRU", "1", record.id or 0)
        uow.archive.add_patient(patient)
        for uid, study_date in (("1.3.1", None), ("1.3.2", date(2020, 1, 1)),
                                ("1.3.3", date(2021, 1, 1))):
            uow.archive.add_study(StoredStudy(uid, patient.id or 0, study_date,
                                              first_received_at=NOW, last_received_at=NOW))
        study = uow.archive.study("1.3.1")
        assert study is not None
        unnumbered, numbered = StoredSeries("1.3.1.1", study.id or 0), StoredSeries(
            "1.3.1.2", study.id or 0, "CT", 1)
        uow.archive.add_series(unnumbered)
        uow.archive.add_series(numbered)
        for series, sop, number in ((unnumbered, "1.3.1.1.1", None),
                                    (numbered, "1.3.1.2.1", None), (numbered, "1.3.1.2.2", 2),
                                    (numbered, "1.3.1.2.3", 1)):
            uow.archive.add_instance(new_instance(series, sop, number))
        uow.commit()
    with uow_factory(read_only=True) as uow:
        studies = uow.archive.find_studies(StudyFilter(person_ids=(person,)))
        assert [s.study_instance_uid for s in studies] == ["1.3.3", "1.3.2", "1.3.1"]
        assert [s.series_instance_uid for s in studies[2].series] == ["1.3.1.2", "1.3.1.1"]
        found = uow.archive.instances(study_uid="1.3.1")
        assert [i.sop_instance_uid for i in found] == [
            "1.3.1.2.3", "1.3.1.2.2", "1.3.1.2.1", "1.3.1.1.1"]

