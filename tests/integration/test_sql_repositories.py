"""The SQL unit of work and its repositories, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import StatementError

from adapters.sql.tables import authorities, outbox_events, source_records, sync_authorities
from adapters.sql.uow import SqlUnitOfWork, SqlUnitOfWorkFactory
from mpi.errors import ConcurrencyError
from mpi.events import PersonCreated, PersonIdentifiersChanged, RecordRegistered
from mpi.model import (
    Authority,
    AuthorityKind,
    Demographics,
    Identifier,
    JournalEntry,
    JournalStatus,
    Link,
    LinkMethod,
    Person,
    PersonStatus,
    RecordStatus,
    SourceRecord,
    master_id_of,
)
from mpi.ports import PersonQuery

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
PARIS_SUMMER = timezone(timedelta(hours=2))
INS_A = Identifier("INS-NIR", "180012A00100145")
INS_B = Identifier("INS-NIR", "290035400100188")

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


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


def add_person(uow: SqlUnitOfWork, *records: SourceRecord) -> int:
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


def run_in_thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def guarded() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    return thread


# -- records -------------------------------------------------------------------------------


def test_add_assigns_an_id_and_version_one(uow_factory: SqlUnitOfWorkFactory) -> None:
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


def test_every_demographic_field_round_trips(uow_factory: SqlUnitOfWorkFactory) -> None:
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


def test_save_keeps_every_version_in_the_history(uow_factory: SqlUnitOfWorkFactory) -> None:
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


def test_saving_a_stale_copy_is_a_conflict(uow_factory: SqlUnitOfWorkFactory) -> None:
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


def test_lookups_by_identifier_retirement_ins_and_person(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
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


# -- persons and search --------------------------------------------------------------------


def test_persons_are_added_read_and_saved(uow_factory: SqlUnitOfWorkFactory) -> None:
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


@pytest.fixture
def population(uow_factory: SqlUnitOfWorkFactory) -> dict[str, int]:
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
    uow_factory: SqlUnitOfWorkFactory, population: dict[str, int]
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
    ],
)
def test_search(
    uow_factory: SqlUnitOfWorkFactory,
    population: dict[str, int],
    query: PersonQuery,
    expected: list[str],
) -> None:
    with uow_factory(read_only=True) as uow:
        ids, total = uow.persons.search(query, 0, 10)
    assert ids == sorted(population[name] for name in expected)
    assert total == len(expected)


def test_search_by_master_identifier(
    uow_factory: SqlUnitOfWorkFactory, population: dict[str, int]
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
    uow_factory: SqlUnitOfWorkFactory, population: dict[str, int]
) -> None:
    everyone = sorted(population[name] for name in ("elodie", "jean", "underscore"))
    query = PersonQuery(family="LEF*")
    with uow_factory(read_only=True) as uow:
        assert uow.persons.search(query, 0, 2) == (everyone[:2], 3)
        assert uow.persons.search(query, 2, 2) == (everyone[2:], 3)
        assert uow.persons.search(query, 3, 2) == ([], 3)


# -- links and separations -----------------------------------------------------------------


def test_link_save_inserts_then_replaces(uow_factory: SqlUnitOfWorkFactory) -> None:
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


def test_separations(uow_factory: SqlUnitOfWorkFactory) -> None:
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


# -- journal -------------------------------------------------------------------------------


def test_journal_add_find_save_and_list(uow_factory: SqlUnitOfWorkFactory) -> None:
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
    uow_factory: SqlUnitOfWorkFactory,
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


# -- outbox, notifications, transactions ---------------------------------------------------


def count_rows(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_outbox_is_written_at_commit_in_one_statement(
    uow_factory: SqlUnitOfWorkFactory, engine: Engine
) -> None:
    statements: list[tuple[str, bool]] = []

    def spy(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        if "outbox_events" in statement:
            statements.append((statement, executemany))

    event.listen(engine, "before_cursor_execute", spy)
    try:
        with uow_factory() as uow:
            person = add_person(uow)
            uow.outbox.add(PersonCreated(person))
            uow.outbox.add(RecordRegistered(7, Identifier("CHRU", "1")))
            uow.outbox.add(PersonIdentifiersChanged(person, frozenset(), frozenset({INS_A})))
            assert statements == []
            uow.commit()
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    if engine.dialect.name == "sqlite":
        assert len(statements) == 1 and statements[0][0].startswith("INSERT")
    else:
        # PostgreSQL: written by the driver in the pipeline that carries the COMMIT.
        assert statements == []
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                outbox_events.c.type, outbox_events.c.payload, outbox_events.c.occurred_at
            ).order_by(outbox_events.c.id)
        ).all()
    assert [(row.type, row.payload) for row in rows] == [
        ("PersonCreated", {"person_id": person}),
        ("RecordRegistered", {"record_id": 7, "identifier": "CHRU|1"}),
        ("PersonIdentifiersChanged", {"person_id": person, "before": [], "after": [str(INS_A)]}),
    ]
    assert all(row.occurred_at.tzinfo == UTC for row in rows)


def test_notification_cycle(uow_factory: SqlUnitOfWorkFactory) -> None:
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


def test_leaving_without_commit_rolls_everything_back(
    uow_factory: SqlUnitOfWorkFactory, engine: Engine
) -> None:
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
    assert count_rows(engine, outbox_events) == 0
    assert count_rows(engine, source_records) == 1


def test_datetimes_are_aware_utc_and_naive_ones_are_refused(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    received = datetime(2024, 7, 14, 23, 30, tzinfo=PARIS_SUMMER)
    with uow_factory() as uow:
        entry = journal_entry("C1")
        entry.received_at = received
        uow.journal.add(entry)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        stored = uow.journal.get(entry.id or 0)
    assert stored is not None
    assert stored.received_at == received and stored.received_at.tzinfo == UTC
    assert stored.received_at.day == 14 and stored.received_at.hour == 21
    with uow_factory() as uow, pytest.raises(StatementError):
        uow.persons.add(Person(created_at=datetime(2024, 1, 1, 12, 0)))


def test_sync_authorities_upserts_and_keeps_authorities_in_use(
    uow_factory: SqlUnitOfWorkFactory, engine: Engine
) -> None:
    with uow_factory() as uow:
        uow.records.add(make_record("1", "ICL"))
        uow.commit()
    renamed = Authority("CHRU", "CHRU Nancy", AuthorityKind.ESTABLISHMENT, "CHRU", "1.2.9.1")
    added = Authority("NEW", "Nouveau", AuthorityKind.ESTABLISHMENT, "NEW", "1.2.9.2")
    with engine.begin() as connection:
        sync_authorities(connection, [renamed, added])
    with engine.connect() as connection:
        rows = connection.execute(
            select(authorities.c.code, authorities.c.name, authorities.c.oid).order_by(
                authorities.c.code
            )
        ).all()
    # ICL is no longer declared but a record uses it; the other undeclared ones are gone.
    assert [tuple(row) for row in rows] == [
        ("CHRU", "CHRU Nancy", "1.2.9.1"),
        ("ICL", "Institut de Cancérologie de Lorraine", "1.2.250.1.999.54.2"),
        ("NEW", "Nouveau", "1.2.9.2"),
    ]


def test_read_only_unit_of_work_does_not_wait_for_a_writer(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    with uow_factory() as writer:
        writer.records.add(make_record("1"))
        writer.commit()
        writer.records.add(make_record("2"))
        with uow_factory(read_only=True) as reader:
            assert reader.records.by_identifier(Identifier("CHRU", "1")) is not None
            assert reader.records.by_identifier(Identifier("CHRU", "2")) is None


@sqlite_only
def test_sqlite_writers_are_serialized(uow_factory: SqlUnitOfWorkFactory) -> None:
    errors: list[BaseException] = []
    second_started = threading.Event()
    with uow_factory() as first:
        first.records.add(make_record("1"))

        def second() -> None:
            with uow_factory() as uow:  # BEGIN IMMEDIATE waits for the first writer
                second_started.set()
                assert uow.records.by_identifier(Identifier("CHRU", "1")) is not None

        thread = run_in_thread(second, errors)
        assert not second_started.wait(0.3)
        first.commit()
    thread.join(10)
    assert second_started.is_set() and errors == []


# -- PostgreSQL concurrency ----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_lock_serializes_units_of_work_on_the_same_key(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    errors: list[BaseException] = []
    first_locked, second_locked, release = threading.Event(), threading.Event(), threading.Event()
    created: dict[str, int] = {}

    def first() -> None:
        with uow_factory() as uow:
            uow.lock(["record:CHRU|1"])
            first_locked.set()
            release.wait(10)
            created["person"] = add_person(uow)
            uow.commit()

    def second() -> None:
        first_locked.wait(10)
        with uow_factory() as uow:
            uow.lock(iter(["ins:INS-NIR|1", "record:CHRU|1"]))
            second_locked.set()
            # Under READ COMMITTED the second sees what the first committed before it.
            created["seen"] = int(uow.persons.get(created["person"]) is not None)

    threads = [run_in_thread(first, errors), run_in_thread(second, errors)]
    assert first_locked.wait(10)
    with uow_factory() as other:
        other.lock(["record:CHRU|2"])  # another key does not wait
    assert not second_locked.wait(0.3)
    release.set()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert second_locked.is_set() and created["seen"] == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_workers_claim_disjoint_notifications(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    with uow_factory() as uow:
        for _ in range(5):
            uow.notifications.enqueue("PACS", add_person(uow), NOW)
        uow.commit()
    with uow_factory() as worker, uow_factory() as other_worker:
        mine = worker.notifications.claim_due("PACS", NOW, 2)
        theirs = other_worker.notifications.claim_due("PACS", NOW, 10)
        assert len(mine) == 2 and len(theirs) == 3
        assert not {n.id for n in mine} & {n.id for n in theirs}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_change_during_a_send_gets_its_own_notification(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    with uow_factory() as uow:
        person = add_person(uow)
        uow.notifications.enqueue("PACS", person, NOW)
        uow.commit()
    with uow_factory() as worker:
        (claimed,) = worker.notifications.claim_due("PACS", NOW, 10)
        with uow_factory() as writer:
            writer.notifications.enqueue("PACS", person, NOW)
            writer.commit()
        worker.notifications.mark_sent(claimed.id, NOW)
        worker.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.notifications.pending_count("PACS") == 1
