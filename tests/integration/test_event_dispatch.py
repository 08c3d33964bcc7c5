"""The outbox dispatcher on SQLite and PostgreSQL: an event is handled exactly once even when
the dispatching process dies between reading and marking it, and concurrent dispatchers
share the work without handling an event twice."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import pytest

from adapters.sql.uow import SqlUnitOfWorkFactory
from mpi.events import Event, PersonCreated
from mpi.handlers import EventDispatcher
from mpi.model import Person
from mpi.ports import UnitOfWork
from tests.fakes import FixedClock

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def write(factory: SqlUnitOfWorkFactory, *events: Event) -> None:
    """Store the persons the events name (notifications refer to them), then the events."""
    with factory() as uow:
        for event in events:
            assert isinstance(event, PersonCreated)
            person = Person(created_at=NOW)
            uow.persons.add(person)
            assert person.id == event.person_id
            uow.outbox.add(event)
        uow.commit()


def notify_pacs(uow: UnitOfWork, event: Event) -> None:
    assert isinstance(event, PersonCreated)
    uow.notifications.enqueue("PACS", event.person_id, NOW)


def counts(factory: SqlUnitOfWorkFactory) -> tuple[int, int]:
    with factory(read_only=True) as uow:
        return uow.outbox.pending_count(), uow.notifications.pending_count("PACS")


# A dispatcher in another process whose handler writes, then the process is killed before
# the transaction commits.
DYING_DISPATCHER = textwrap.dedent("""
    import os, signal, sys
    from datetime import datetime, timezone
    from adapters.sql.engine import create_engine_for
    from adapters.sql.uow import SqlUnitOfWorkFactory
    from mpi.events import PersonCreated
    from mpi.handlers import EventDispatcher
    from tests.fakes import FixedClock

    def notify_then_die(uow, event):
        uow.notifications.enqueue("PACS", event.person_id,
                                  datetime(2026, 12, 1, tzinfo=timezone.utc))
        uow.notifications.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    factory = SqlUnitOfWorkFactory(create_engine_for(sys.argv[1]))
    EventDispatcher(factory, FixedClock(), {PersonCreated: [notify_then_die]}).dispatch_due()
""")


def test_an_event_read_by_a_process_that_dies_before_marking_it_is_handled_once_later(
    uow_factory: SqlUnitOfWorkFactory, database_url: str,
) -> None:
    write(uow_factory, PersonCreated(1), PersonCreated(2))
    dying = subprocess.run([sys.executable, "-c", DYING_DISPATCHER, database_url],
                           capture_output=True, text=True, timeout=60)
    assert dying.returncode == -9, dying.stderr
    assert counts(uow_factory) == (2, 0)  # nothing the dead process did remains
    report = EventDispatcher(uow_factory, FixedClock(), {PersonCreated: [notify_pacs]}
                             ).dispatch_due()
    assert report.processed == 2 and report.failures == []
    assert counts(uow_factory) == (0, 2)


def test_a_failed_event_waits_for_its_retry_and_the_others_are_processed(
    uow_factory: SqlUnitOfWorkFactory,
) -> None:
    def refuse_two(uow: UnitOfWork, event: Event) -> None:
        assert isinstance(event, PersonCreated)
        if event.person_id == 2:
            raise RuntimeError("cannot handle person 2 now")
        notify_pacs(uow, event)

    clock = FixedClock(NOW)
    dispatcher = EventDispatcher(uow_factory, clock, {PersonCreated: [refuse_two]},
                                 retry_delay=60)
    write(uow_factory, PersonCreated(1), PersonCreated(2), PersonCreated(3))
    report = dispatcher.dispatch_due()
    assert report.processed == 2 and len(report.failures) == 1
    assert counts(uow_factory) == (1, 2)
    assert dispatcher.dispatch_due().processed == 0  # its retry is not due yet
    with uow_factory() as uow:
        (waiting,) = uow.outbox.claim(NOW.replace(year=2027), 10)
    assert waiting.attempts == 1 and waiting.event == PersonCreated(2)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_dispatchers_claim_disjoint_events(uow_factory: SqlUnitOfWorkFactory) -> None:
    write(uow_factory, *(PersonCreated(n) for n in range(1, 6)))
    with uow_factory() as first, uow_factory() as second:
        mine = first.outbox.claim(NOW.replace(year=2027), 2)
        theirs = second.outbox.claim(NOW.replace(year=2027), 10)
        assert [s.event for s in mine] == [PersonCreated(1), PersonCreated(2)]
        assert [s.event for s in theirs] == [PersonCreated(n) for n in (3, 4, 5)]
