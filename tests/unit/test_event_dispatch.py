"""The outbox dispatcher on fakes: every event reaches the handlers subscribed to its type
once, a failing event is isolated and retried with backoff, the others go through."""

from __future__ import annotations

from datetime import timedelta

from mpi.events import Event, PersonCreated, PersonsMerged, RecordLinked, UnreadableEvent
from mpi.handlers import EventDispatcher
from mpi.ports import UnitOfWork
from tests.fakes import FixedClock, fake_uow_factory


def write(factory, *events: Event) -> None:  # type: ignore[no-untyped-def]
    with factory() as uow:
        for event in events:
            uow.outbox.add(event)
        uow.commit()


def pending(factory) -> int:  # type: ignore[no-untyped-def]
    with factory() as uow:
        return uow.outbox.pending_count()


def test_each_event_reaches_the_handlers_of_its_type_once_and_is_marked_processed() -> None:
    factory, clock = fake_uow_factory(), FixedClock()
    seen: list[Event] = []

    def remember(uow: UnitOfWork, event: Event) -> None:
        seen.append(event)

    dispatcher = EventDispatcher(factory, clock, {PersonCreated: [remember]})
    write(factory, PersonCreated(1), RecordLinked(1, 1, "new"), PersonCreated(2))
    report = dispatcher.dispatch_due()
    assert report.processed == 3 and report.failures == []
    assert seen == [PersonCreated(1), PersonCreated(2)]
    assert pending(factory) == 0
    assert dispatcher.dispatch_due().processed == 0
    assert seen == [PersonCreated(1), PersonCreated(2)]


def test_a_handler_writes_in_the_transaction_that_marks_the_event() -> None:
    factory, clock = fake_uow_factory(), FixedClock()

    def queue(uow: UnitOfWork, event: Event) -> None:
        assert isinstance(event, PersonCreated)
        uow.notifications.enqueue("PACS", event.person_id, clock.now())

    dispatcher = EventDispatcher(factory, clock, {PersonCreated: [queue]})
    write(factory, PersonCreated(7))
    dispatcher.dispatch_due()
    with factory() as uow:
        assert uow.notifications.pending_count("PACS") == 1
        assert uow.outbox.pending_count() == 0


def test_a_failing_event_is_isolated_retried_with_backoff_and_the_others_go_through() -> None:
    factory, clock = fake_uow_factory(), FixedClock()
    handled: list[int] = []
    broken = {2}

    def handle(uow: UnitOfWork, event: Event) -> None:
        assert isinstance(event, PersonCreated)
        if event.person_id in broken:
            raise RuntimeError("consumer table locked")
        handled.append(event.person_id)
        uow.notifications.enqueue("PACS", event.person_id, clock.now())

    dispatcher = EventDispatcher(factory, clock, {PersonCreated: [handle]}, retry_delay=10)
    write(factory, PersonCreated(1), PersonCreated(2), PersonCreated(3))
    report = dispatcher.dispatch_due()
    # The batch ran until event 2 failed and was rolled back; then each event alone.
    assert handled == [1, 1, 3]
    assert report.processed == 2
    assert [(event_type, error) for _, event_type, error in report.failures] == [
        ("PersonCreated", "RuntimeError: consumer table locked")]
    assert pending(factory) == 1
    with factory() as uow:
        assert uow.notifications.pending_count("PACS") == 2  # not twice for 1 and 3
        (row,) = [r for r in uow.store.outbox if r["processed_at"] is None]
        assert row["attempts"] == 1 and row["last_error"].startswith("RuntimeError")
        first_retry = row["due_at"]
    assert dispatcher.dispatch_due().processed == 0  # not due yet: backoff
    broken.clear()
    clock.current = first_retry + timedelta(seconds=1)
    assert dispatcher.dispatch_due().processed == 1
    assert handled == [1, 1, 3, 2] and pending(factory) == 0


class StillClock(FixedClock):
    """A clock that moves only when the test moves it."""

    def now(self):  # type: ignore[no-untyped-def]
        return self.current


def test_backoff_grows_with_each_failure_up_to_its_ceiling() -> None:
    factory, clock = fake_uow_factory(), StillClock()

    def fail(uow: UnitOfWork, event: Event) -> None:
        raise RuntimeError("down")

    dispatcher = EventDispatcher(factory, clock, {PersonsMerged: [fail]}, retry_delay=1,
                                 max_backoff=20)
    write(factory, PersonsMerged(1, 2, "merge"))
    delays = []
    for _ in range(6):
        before = clock.current
        dispatcher.dispatch_due()
        with factory() as uow:
            due = uow.store.outbox[0]["due_at"]
        delays.append(round((due - before).total_seconds()))
        clock.current = due
    assert delays == [2, 4, 8, 16, 20, 20]


def test_an_unreadable_event_is_reported_failed_not_dropped() -> None:
    factory, clock = fake_uow_factory(), FixedClock()
    dispatcher = EventDispatcher(factory, clock, {})
    write(factory, UnreadableEvent("PatientTeleported", "unknown event type"))
    report = dispatcher.dispatch_due()
    assert report.processed == 0
    assert report.failures[0][1] == "UnreadableEvent"
    assert pending(factory) == 1
