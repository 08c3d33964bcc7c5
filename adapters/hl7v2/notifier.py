"""PIX Update Notification (ITI-10): ADT^A31 to the subscribed consumers.

Which consumer hears of which change is the core's notification policy
(:class:`mpi.handlers.PixNotificationPolicy`), run by the outbox dispatcher; this module
delivers what it queued. Each consumer has its own delivery job (``notify:<consumer>``), so a
consumer that is down delays only its own notifications. A notification is leased before it is sent (its due time moved past the send
timeout) so that no transaction stays open across the network and several processes can share
the work; a failed send is retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.hl7v2.er7 import Separators, escape, parse
from adapters.hl7v2.mllp import MLLPClient, MLLPError
from adapters.hl7v2.replies import cx, new_control_id, segment
from mpi.authorities import AuthorityRegistry
from mpi.model import Consumer
from mpi.ports import Clock, PendingNotification, UnitOfWork
from mpi.queries import current_person, person_view

__all__ = ["PixNotifier", "build_a31", "notification_control_id", "Delivery"]

log = logging.getLogger(__name__)

SEPARATORS = Separators()
BATCH = 50


@dataclass(frozen=True)
class Delivery:
    notification: PendingNotification
    message: str | None  # None: nothing to announce any more (e.g. no identifier left)


Sender = Callable[[Consumer, str, float], Awaitable[str]]


async def send_over_mllp(consumer: Consumer, message: str, timeout: float) -> str:
    """Send one message to a consumer and return its reply. Raises MLLPError."""
    client = await MLLPClient.connect(consumer.host, consumer.port, timeout)
    try:
        reply = await client.request(message.encode("utf-8"), timeout)
    finally:
        await client.close()
    return reply.decode("utf-8", errors="replace")


def notification_control_id(notification_id: int) -> str:
    """The MSH-10 of a notification's A31: its own, the same at every attempt, so that a
    consumer recognizes a retransmission (one sent again because the process died between
    the consumer's acknowledgement and the record of it) as the same message."""
    return f"NTF{notification_id}"


def build_a31(view_identifiers: list[str], names: str, consumer: Consumer, now: datetime,
              control_id: str | None = None) -> str:
    """The ADT^A31 announcing a person's identifiers; ``control_id`` its MSH-10 (a fresh one
    when not given)."""
    s = SEPARATORS
    return "\r".join([
        segment(s, "MSH", s.encoding_characters, "MPI", "GCS", consumer.receiving_application,
                consumer.receiving_facility, f"{now:%Y%m%d%H%M%S}", "", "ADT^A31^ADT_A05",
                control_id or new_control_id(now), "P", "2.5", "", "", "", "", "", "UNICODE UTF-8"),
        segment(s, "EVN", "", f"{now:%Y%m%d%H%M%S}"),
        segment(s, "PID", "", "", s.repetition.join(view_identifiers), "", names),
        segment(s, "PV1", "", "N"),
    ]) + "\r"


class PixNotifier:
    def __init__(
        self,
        registry: AuthorityRegistry,
        uow_factory: Callable[..., UnitOfWork],
        clock: Clock,
        *,
        interval: float = 1.0,
        timeout: float = 10.0,
        max_backoff: float = 300.0,
        sender: Sender = send_over_mllp,
    ) -> None:
        self.registry = registry
        self.uow_factory = uow_factory
        self.clock = clock
        self.interval = interval  # the base of the backoff after a failed send
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.sender = sender

    async def deliver_due(self, consumer: Consumer) -> bool:
        """Send what is due for one consumer; True when a full batch was found."""
        deliveries = await asyncio.to_thread(self._lease, consumer)
        for delivery in deliveries:
            pending = delivery.notification
            if delivery.message is None:
                await asyncio.to_thread(self._mark_sent, pending)
                continue
            try:
                reply = await self.sender(consumer, delivery.message, self.timeout)
                ack_code = _ack_code(reply)
                if ack_code not in ("AA", "CA"):
                    raise MLLPError(f"the consumer answered {ack_code or 'no acknowledgement'}")
            except (TimeoutError, MLLPError, OSError) as exc:
                await asyncio.to_thread(self._mark_failed, pending, str(exc))
                # The consumer is probably down: the rest waits for the next round. Order does
                # not matter: every A31 carries the person's identifiers as they are now.
                return False
            await asyncio.to_thread(self._mark_sent, pending)
        return len(deliveries) == BATCH

    def _lease(self, consumer: Consumer) -> list[Delivery]:
        now = self.clock.now()
        with self.uow_factory() as uow:
            claimed = uow.notifications.claim_due(consumer.name, now, BATCH)
            deliveries = []
            lease_until = now + timedelta(seconds=self.timeout * 3)
            for pending in claimed:
                uow.notifications.mark_failed(pending.id, pending.attempts, lease_until, "sending")
                deliveries.append(Delivery(pending, self._message(uow, consumer, pending, now)))
            uow.commit()
        return deliveries

    def _message(self, uow: UnitOfWork, consumer: Consumer, pending: PendingNotification,
                 now: datetime) -> str | None:
        person = current_person(uow, pending.person_id)
        if person is None:
            return None
        view = person_view(uow, self.registry, person)
        wanted = set(consumer.domains)
        s = SEPARATORS
        identifiers = [cx(i, self.registry, s) for i in view.identifiers
                       if i.authority in wanted]
        if not identifiers:
            return None
        d = view.demographics
        given = d.given_names[0] if d.given_names else ""
        names = s.component.join([escape(d.birth_family_name or ""), escape(given), "", "", "",
                                  "", "L"]) if d.birth_family_name else ""
        return build_a31(identifiers, names, consumer, now,
                         notification_control_id(pending.id))

    def _mark_sent(self, pending: PendingNotification) -> None:
        with self.uow_factory() as uow:
            uow.notifications.mark_sent(pending.id, self.clock.now())
            uow.commit()

    def _mark_failed(self, pending: PendingNotification, error: str) -> None:
        attempts = pending.attempts + 1
        delay = min(self.max_backoff, self.interval * (2 ** min(attempts, 16)))
        log.warning("notification to %s failed (attempt %d, next in %.0f s): %s",
                    pending.consumer, attempts, delay, error)
        with self.uow_factory() as uow:
            uow.notifications.mark_failed(
                pending.id, attempts, self.clock.now() + timedelta(seconds=delay), error
            )
            uow.commit()


def _ack_code(reply: str) -> str:
    try:
        msa = parse(reply).first("MSA")
    except ValueError:
        return ""
    return msa.value(1).upper() if msa else ""
