"""What only the SQL unit of work shows, on SQLite and PostgreSQL: how rows are written (one
statement, PostgreSQL's pipeline), instants stored in UTC, the authorities table, and how
transactions on different connections wait for or skip each other (BEGIN IMMEDIATE, advisory
locks, SKIP LOCKED). The contracts of the ports themselves, which the in-memory fakes keep
too, are tested on every implementation in ``tests/contract/test_repositories.py``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import StatementError

from adapters.sql.tables import authorities, outbox_events, sync_authorities
from adapters.sql.uow import SqlUnitOfWorkFactory
from mpi.events import PersonCreated, PersonIdentifiersChanged, RecordRegistered
from mpi.model import Authority, AuthorityKind, Identifier, Person
from tests.entities import INS_A, NOW, add_person, journal_entry, make_record

PARIS_SUMMER = timezone(timedelta(hours=2))

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def run_in_thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def guarded() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    return thread


# -- how rows are written ------------------------------------------------------------------


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


# -- what the database keeps -----------------------------------------------------------------


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


# -- transactions on several connections -----------------------------------------------------


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
