"""What reacts to domain events, and the dispatcher that reads them from the outbox.

A use case only says what happened: its events are written to the outbox in its own
transaction. The dispatcher reads pending events in order and hands each to the handlers
subscribed to its type, in one transaction that also marks the events processed: a process
that dies in between rolls everything back and the events are read again, so a handler that
writes to the index (a notification to send, a retention date) takes effect exactly once.
Several processes may dispatch at the same time: each claims events the others skip
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL). Order is kept within one process; handlers read
the current state rather than trust the order of events across processes.

A batch whose handlers fail is rolled back and its events are dispatched again one by one,
so that one failing event is isolated: it is marked failed and retried with backoff, and the
others go through.

Subscriptions are declared in the composition root (``adapters/bootstrap.py``): today the
PIX notification policy (:class:`PixNotificationPolicy`); the archive's retention and the
console subscribe more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from mpi.authorities import AuthorityRegistry
from mpi.events import Event, PersonIdentifiersChanged, StoredEvent, UnreadableEvent
from mpi.ports import Clock, UnitOfWork

__all__ = ["Handler", "Subscriptions", "DispatchPass", "EventDispatcher",
           "PixNotificationPolicy"]

# A handler works in the dispatcher's unit of work (it must not commit) and raises to say the
# event could not be handled now; it is retried later.
Handler = Callable[[UnitOfWork, Event], None]
Subscriptions = Mapping[type[Event], Sequence[Handler]]


@dataclass
class DispatchPass:
    """What one pass over the outbox did."""

    processed: int = 0
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # id, type, error
    full: bool = False  # a whole batch was found: more may be waiting


class EventDispatcher:
    """Reads the outbox and calls the handlers subscribed to each event's type."""

    def __init__(self, uow_factory: Callable[..., UnitOfWork], clock: Clock,
                 subscriptions: Subscriptions, *, batch: int = 200, retry_delay: float = 1.0,
                 max_backoff: float = 300.0) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.subscriptions = dict(subscriptions)
        self.batch = batch
        self.retry_delay = retry_delay
        self.max_backoff = max_backoff

    def handlers_of(self, event: Event) -> Sequence[Handler]:
        return self.subscriptions.get(type(event), ())

    def dispatch_due(self) -> DispatchPass:
        """One pass: the pending events due now, a batch at a time in one transaction; when a
        handler fails, the batch again one event per transaction."""
        report = DispatchPass()
        try:
            with self.uow_factory() as uow:
                claimed = uow.outbox.claim(self.clock.now(), self.batch)
                for stored in claimed:
                    self._handle(uow, stored)
                uow.outbox.mark_processed([s.id for s in claimed], self.clock.now())
                uow.commit()
            report.processed = len(claimed)
            report.full = len(claimed) == self.batch
            return report
        except Exception:  # a handler failed: find which event, one at a time
            for _ in range(self.batch):
                if not self._dispatch_one(report):
                    break
            return report

    def _dispatch_one(self, report: DispatchPass) -> bool:
        """Dispatch the oldest due event alone; False when none is due."""
        stored: StoredEvent | None = None
        try:
            with self.uow_factory() as uow:
                claimed = uow.outbox.claim(self.clock.now(), 1)
                if not claimed:
                    return False
                stored = claimed[0]
                self._handle(uow, stored)
                uow.outbox.mark_processed([stored.id], self.clock.now())
                uow.commit()
            report.processed += 1
            return True
        except Exception as exc:  # recorded on the event, reported by the pass
            if stored is None:
                raise
            self._record_failure(stored, exc)
            report.failures.append((stored.id, stored.event.name, f"{type(exc).__name__}: {exc}"))
            return True

    def _handle(self, uow: UnitOfWork, stored: StoredEvent) -> None:
        if isinstance(stored.event, UnreadableEvent):
            raise ValueError(f"unreadable {stored.event.type_name} event: {stored.event.error}")
        for handler in self.handlers_of(stored.event):
            handler(uow, stored.event)

    def _record_failure(self, stored: StoredEvent, exc: Exception) -> None:
        attempts = stored.attempts + 1
        delay = min(self.max_backoff, self.retry_delay * 2 ** min(attempts, 16))
        with self.uow_factory() as uow:
            uow.outbox.mark_failed(stored.id, attempts,
                                   self.clock.now() + timedelta(seconds=delay),
                                   f"{type(exc).__name__}: {exc}")
            uow.commit()

    def backlog(self) -> int:
        """Events not processed yet."""
        with self.uow_factory(read_only=True) as uow:
            return uow.outbox.pending_count()


class PixNotificationPolicy:
    """ITI-10: a consumer hears of a person whose identifiers in its domains changed. The
    notification is queued here; its delivery job reads the identifiers when it sends."""

    def __init__(self, registry: AuthorityRegistry, clock: Clock) -> None:
        self.registry = registry
        self.clock = clock

    def __call__(self, uow: UnitOfWork, event: Any) -> None:
        assert isinstance(event, PersonIdentifiersChanged)
        if not event.after:
            return  # a person merged away: its survivor is notified instead
        for consumer in self.registry.consumers:
            wanted = set(consumer.domains)
            before = {i for i in event.before if i.authority in wanted}
            after = {i for i in event.after if i.authority in wanted}
            if before != after:
                uow.notifications.enqueue(consumer.name, event.person_id, self.clock.now())
