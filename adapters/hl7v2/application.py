"""The inbound HL7 v2 pipeline: decode, journal, parse, apply, acknowledge.

Every message is journaled (raw, sender, control ID, outcome and reply) before its reply leaves:
in the same transaction as the change it caused when it is applied, in a transaction of its own
when it is not. The access trail gets one entry per message in the same transaction: who sent
it (MSH-4/MSH-3 and the peer's address), the persons it changed or disclosed, its outcome. A
retransmission (same sending facility and MSH-10) gets the stored reply and changes nothing.

A message that came over TLS speaks for the establishment of the client certificate: when its
MSH-4 is not one of that establishment's sending facilities it gets AR with ERR and changes
nothing; it is journaled (without its control ID, so that it never stands in the way of the
real sender's message of the same ID) and audited as a security alert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from adapters.errors import DatabaseUnavailableError
from adapters.hl7v2.adt import SUPPORTED_EVENTS, UnsupportedEventError, apply_adt
from adapters.hl7v2.charset import (
    MessageDecodingError,
    UnsupportedCharsetError,
    decode_message,
    message_charset,
    python_codec,
)
from adapters.hl7v2.er7 import Message, ParseError, parse
from adapters.hl7v2.pixpdq import answer_pdq_query, answer_pix_query
from adapters.hl7v2.replies import (
    APPLICATION_INTERNAL_ERROR,
    DATABASE_UNAVAILABLE,
    ERROR_TEXTS,
    MESSAGE_ACCEPTED,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    Problem,
    ReplyHeader,
    ack,
    problem_from_error,
)
from adapters.logs import log_event, request_scope
from adapters.metrics import metrics
from mpi.audit import AuditAction, AuditEvent
from mpi.authorities import AuthorityRegistry
from mpi.errors import ConcurrencyError, MPIError
from mpi.events import UpdateQuarantined, persons_concerned
from mpi.identity import Actor, IdentityService
from mpi.model import JournalEntry, JournalStatus
from mpi.ports import Clock, UnitOfWork
from mpi.retry import retry_on_conflict

__all__ = ["Hl7Application", "Reply"]

log = logging.getLogger("mpi.hl7")

CHANNEL = "mllp"
# What the trail calls each ADT event (the others are updates).
_CREATES = frozenset({"A01", "A04", "A05", "A28"})


@dataclass(frozen=True)
class Reply:
    text: str
    codec: str
    status: JournalStatus
    ack_code: str = "AA"
    error_code: int | None = None

    @classmethod
    def of(cls, entry: JournalEntry, codec: str) -> Reply:
        """The reply a journal entry holds."""
        assert entry.reply is not None
        return cls(entry.reply, codec, entry.status, entry.ack_code or "AA", entry.error_code)


class _Rejected(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class Hl7Application:
    """Turns one inbound payload into its reply. Thread-safe: share one per process."""

    def __init__(
        self,
        registry: AuthorityRegistry,
        service: IdentityService,
        uow_factory: Callable[..., UnitOfWork],
        clock: Clock,
        default_codec: str = "utf-8",
        refuse_identity_collision: bool = False,
    ) -> None:
        self.registry = registry
        self.service = service
        self.uow_factory = uow_factory
        self.clock = clock
        self.default_codec = default_codec
        # An update held because it describes another person: AE instead of AA + warning.
        self.refuse_identity_collision = refuse_identity_collision

    # -- entry points ----------------------------------------------------------------------

    def handle(self, payload: bytes, oversized: bool = False, peer: str = "",
               establishment: str | None = None, certificate: str | None = None) -> Reply:
        """Answer one message, and log one line of what happened (sender, type, control ID,
        outcome, duration; never a patient's data). ``establishment`` is the one a TLS client
        certificate (named ``certificate``) speaks for. Never raises for bad input: the reply
        says what was wrong."""
        with request_scope():
            return self._handle(payload, oversized, peer, establishment, certificate)

    def _handle(self, payload: bytes, oversized: bool, peer: str, establishment: str | None,
                certificate: str | None) -> Reply:
        started = time.perf_counter()
        reply, message = self._answer(payload, oversized, peer, establishment, certificate)
        msh = message.msh if message is not None else None
        sender = msh.value(4) if msh is not None else ""
        metrics().hl7_message(msh.raw(9) if msh is not None else None, reply.ack_code,
                              time.perf_counter() - started)
        log_event(log, logging.INFO if reply.ack_code == "AA" else logging.WARNING,
                  "hl7 message", sender=sender or None, peer=peer or None,
                  type=msh.raw(9) if msh is not None else None,
                  control=msh.value(10) if msh is not None else None,
                  outcome=reply.ack_code, error=reply.error_code,
                  meaning=ERROR_TEXTS.get(reply.error_code) if reply.error_code else None,
                  ms=(time.perf_counter() - started) * 1000)
        if reply.error_code == UNKNOWN_KEY_IDENTIFIER and msh is not None and (
                establishment is None and self.registry.for_facility(sender) is None):
            log_event(log, logging.WARNING,
                      "refused HL7 sender: its MSH-4 speaks for no declared establishment; "
                      "add it to the sending_facilities of its establishment in the "
                      "authorities file (MPI_AUTHORITIES)", sender=sender or "(empty)",
                      peer=peer or None)
        return reply

    def _answer(self, payload: bytes, oversized: bool, peer: str = "",
                establishment: str | None = None,
                certificate: str | None = None) -> tuple[Reply, Message | None]:
        """The reply to one payload, and the message when it could be parsed."""
        if oversized:
            # Only the message's beginning was kept: it may end inside a multi-byte character.
            text, codec = self._lenient_decode(payload)
            return self._reject_unreadable(text, codec, Problem(
                "AR", APPLICATION_INTERNAL_ERROR, "message larger than this server accepts"), peer)
        try:
            text, codec = decode_message(payload, self.default_codec)
        except (UnsupportedCharsetError, MessageDecodingError) as exc:
            text, codec = payload.decode("latin-1"), "latin-1"
            return self._reject_unreadable(text, codec, Problem(
                "AR", TABLE_VALUE_NOT_FOUND, f"cannot decode the message: {exc}", "MSH^1^18"),
                peer)
        try:
            message = parse(text)
        except ParseError as exc:
            return self._reject_unreadable(text, codec, Problem("AR", SEGMENT_SEQUENCE_ERROR,
                                                                str(exc)), peer)
        header = ReplyHeader.of(message)
        if establishment is not None:
            refused = self._refuse_for_certificate(message, header, text, codec, peer,
                                                   establishment, certificate or "?")
            if refused is not None:
                return refused, message
        # A retransmission is recognized when its journal entry collides with the original's
        # (same sender and control ID): its transaction is rolled back and the stored reply
        # returned. Retransmissions are rare; a lookup before every message is not free.
        return self._process(message, header, text, codec, message.msh.value(4),
                             header.control_id, peer, certificate), message

    def replay(self, entry_id: int) -> JournalEntry:
        """Apply a journaled message again (after a fix). Raises KeyError for an unknown entry,
        ValueError for one that was applied already."""
        with self.uow_factory(read_only=True) as uow:
            entry = uow.journal.get(entry_id)
        if entry is None:
            raise KeyError(entry_id)
        if entry.status in (JournalStatus.APPLIED, JournalStatus.REPLAYED):
            raise ValueError(f"journal entry {entry_id} was applied already")
        message = parse(entry.raw)
        header = ReplyHeader.of(message)

        def apply_again() -> JournalEntry:
            with self.uow_factory() as uow:
                _, problem, action, persons = self._dispatch(uow, message, header)
                if problem is not None:
                    raise _Rejected(problem)
                uow.audit.record(self._trail(message, action, persons, "success",
                                             entry.sender or "", {"replay_of": entry_id}))
                stored = uow.journal.get(entry_id)
                assert stored is not None
                stored.status = JournalStatus.REPLAYED
                stored.replays += 1
                stored.error_code = None
                stored.error_text = None
                uow.journal.save(stored)
                uow.commit()
                return stored

        try:
            return retry_on_conflict(apply_again)
        except (_Rejected, MPIError) as exc:
            problem = exc.problem if isinstance(exc, _Rejected) else problem_from_error(exc)
        with self.uow_factory() as uow:
            stored = uow.journal.get(entry_id)
            assert stored is not None
            stored.replays += 1
            stored.error_code = problem.error_code
            stored.error_text = f"replay: {problem.text}"
            uow.journal.save(stored)
            uow.commit()
            return stored

    # -- internals -------------------------------------------------------------------------

    def _process(self, message: Message, header: ReplyHeader, text: str, codec: str,
                 sender: str, control_id: str, peer: str = "",
                 certificate: str | None = None) -> Reply:
        message_type = message.msh.raw(9)
        # On TLS, the trail also names the certificate that spoke for the sender.
        proven: dict[str, object] = {"certificate": certificate} if certificate else {}

        def apply_once() -> Reply:
            try:
                with self.uow_factory() as uow:
                    reply_text, problem, action, persons = self._dispatch(uow, message, header)
                    answered = bool(reply_text)  # queries answer even their errors
                    if problem is not None and not answered:
                        raise _Rejected(problem)
                    # A query is answered even when its answer is an error: it is journaled
                    # as applied, never replayed.
                    entry = self._entry(text, sender, control_id, message_type, reply_text,
                                        JournalStatus.APPLIED, problem)
                    uow.journal.add(entry)
                    uow.audit.record(self._trail(
                        message, action, persons,
                        "success" if problem is None else f"{problem.ack_code} {problem.error_code}",
                        peer, proven))
                    uow.commit()
                    return Reply.of(entry, codec)
            except ConcurrencyError:
                # A retransmission collides with its original's journal entry: answer as
                # the original was answered. Anything else is a race, tried again whole.
                earlier = self._earlier_reply(sender, control_id, codec)
                if earlier is not None:
                    return earlier
                raise

        try:
            return retry_on_conflict(apply_once)
        except ConcurrencyError:
            problem = Problem("AE", 206, "the record was busy; send the message again")
        except _Rejected as rejected:
            problem = rejected.problem
        except MPIError as exc:
            problem = problem_from_error(exc)
        except DatabaseUnavailableError as exc:
            # Nothing was applied and nothing can be journaled: the sender keeps the message
            # and sends it again, which is applied then as if it came for the first time.
            log_event(log, logging.WARNING, "hl7 message not applied: the database is "
                      "unavailable; answered AE, the sender sends it again", sender=sender,
                      control=control_id, error=str(exc.__cause__ or exc)[:200])
            return Reply.of(self._entry(
                text, sender, control_id, message_type,
                ack(header, self.clock.now(), DATABASE_UNAVAILABLE), JournalStatus.ERROR,
                DATABASE_UNAVAILABLE), codec)
        except Exception:
            log.exception("message %s from %s could not be applied", control_id, sender)
            problem = Problem("AE", APPLICATION_INTERNAL_ERROR,
                              "internal error; the message is kept for replay")
        reply_text = ack(header, self.clock.now(), problem)
        status = JournalStatus.REJECTED if problem.ack_code == "AR" else JournalStatus.ERROR
        return self._journal_failure(
            self._entry(text, sender, control_id, message_type, reply_text, status, problem), codec,
            self._trail(message, self._action(message), set(),
                        f"{problem.ack_code} {problem.error_code}", peer,
                        {"reason": problem.text, **proven}))

    def _refuse_for_certificate(self, message: Message, header: ReplyHeader, text: str,
                                codec: str, peer: str, establishment: str,
                                certificate: str) -> Reply | None:
        """The refusal of a message whose MSH-4 its TLS certificate does not speak for, None
        when it does."""
        facility = message.msh.value(4)
        authority = self.registry.for_facility(facility) if facility else None
        if authority is not None and authority.code == establishment:
            return None
        problem = Problem(
            "AR", UNKNOWN_KEY_IDENTIFIER,
            f"sending facility {facility or '(empty)'} is not one of {establishment}'s, for "
            f"which the TLS certificate {certificate} speaks", "MSH^1^4")
        log_event(log, logging.WARNING,
                  "refused HL7 message: its MSH-4 is not a sending facility of the "
                  "establishment its TLS client certificate speaks for; fix MSH-4 at the "
                  "sender, or the tls_client_names / sending_facilities of the authorities "
                  "file", sender=facility or "(empty)", certificate=certificate,
                  establishment=establishment, peer=peer or None)
        entry = self._entry(text, facility, "", message.msh.raw(9),
                            ack(header, self.clock.now(), problem), JournalStatus.REJECTED,
                            problem)
        trail = AuditEvent(
            occurred_at=self.clock.now(), channel=CHANNEL, action=AuditAction.ALERT,
            actor=f"tls:{certificate}",
            subject=f"{message.msh.raw(9)} {message.msh.value(10)}",
            outcome=f"AR {UNKNOWN_KEY_IDENTIFIER}", authority=establishment,
            source=peer or None,
            detail={"reason": "MSH-4 of another establishment", "sending_facility": facility,
                    "certificate": certificate})
        return self._journal_failure(entry, codec, trail)

    def _dispatch(self, uow: UnitOfWork, message: Message, header: ReplyHeader
                  ) -> tuple[str, Problem | None, AuditAction, set[int]]:
        """The reply and problem of one message, with what the trail says of it: the kind of
        access and the persons changed or disclosed."""
        msh = message.msh
        message_type = msh.value(9, 1).upper()
        event = msh.value(9, 2).upper()
        now = self.clock.now()
        if message_type == "QBP" and event == "Q23":
            return self._query(answer_pix_query(uow, self.registry, message, header, now))
        if message_type == "QBP" and event == "Q22":
            return self._query(answer_pdq_query(uow, self.registry, message, header, now))
        if message_type == "QCN" and event == "J01":
            # stateless continuation: nothing to cancel
            return ack(header, now), None, AuditAction.SEARCH, set()
        if message_type != "ADT":
            return "", Problem("AR", UNSUPPORTED_MESSAGE_TYPE,
                               f"message type {message_type or '?'} is not supported",
                               "MSH^1^9^1^1"), AuditAction.UPDATE, set()
        if event not in SUPPORTED_EVENTS:
            return "", Problem("AR", UNSUPPORTED_EVENT_CODE,
                               f"ADT event {event or '?'} is not supported",
                               "MSH^1^9^1^2"), AuditAction.UPDATE, set()
        actor = self._actor(message)
        try:
            apply_adt(uow, self.service, self.registry, message, event, actor)
        except UnsupportedEventError as exc:
            return "", Problem("AR", UNSUPPORTED_EVENT_CODE, exc.message,
                               exc.location), AuditAction.UPDATE, set()
        held = self._held_for_review(uow)
        return (ack(header, now, held), held, self._action(message),
                persons_concerned(uow.outbox.added()))

    def _held_for_review(self, uow: UnitOfWork) -> Problem | None:
        """What the ACK says of updates held for review (identity collisions): the held
        version is committed with the message either way."""
        held = [e for e in uow.outbox.added() if isinstance(e, UpdateQuarantined)]
        if not held:
            return None
        text = "; ".join(f"update of {e.identifier} not applied, held for identity review "
                         f"(task {e.task_id}): {e.reason}" for e in held)
        if self.refuse_identity_collision:
            return Problem("AE", APPLICATION_INTERNAL_ERROR, text, "PID^1^3")
        return Problem("AA", MESSAGE_ACCEPTED, text, "PID^1^3", severity="W")

    @staticmethod
    def _query(answer: tuple[str, Problem | None, set[int]]
               ) -> tuple[str, Problem | None, AuditAction, set[int]]:
        reply, problem, persons = answer
        return reply, problem, AuditAction.SEARCH, persons

    @staticmethod
    def _action(message: Message) -> AuditAction:
        if message.msh.value(9, 1).upper() != "ADT":
            return AuditAction.SEARCH
        return AuditAction.CREATE if message.msh.value(9, 2).upper() in _CREATES else (
            AuditAction.UPDATE)

    def _trail(self, message: Message | None, action: AuditAction, persons: set[int],
               outcome: str, peer: str, detail: dict[str, object] | None = None) -> AuditEvent:
        """The trail entry of one message: its sender as the journal names it (sending
        facility and application), the establishment it speaks for, where it came from."""
        msh = message.msh if message is not None else None
        facility = msh.value(4) if msh is not None else ""
        application = msh.value(3) if msh is not None else ""
        authority = self.registry.for_facility(facility) if facility else None
        return AuditEvent(
            occurred_at=self.clock.now(), channel=CHANNEL, action=action,
            actor=f"hl7:{facility or '?'}/{application or '?'}",
            subject=(f"{msh.raw(9)} {msh.value(10)}" if msh is not None else "unreadable"),
            outcome=outcome, authority=authority.code if authority else None,
            source=peer or None, persons=tuple(sorted(persons)), detail=dict(detail or {}))

    def _actor(self, message: Message) -> Actor:
        facility = message.msh.value(4)
        application = message.msh.value(3)
        authority = self.registry.for_facility(facility) if facility else None
        if authority is None:
            raise _Rejected(Problem(
                "AR", UNKNOWN_KEY_IDENTIFIER,
                f"sending facility {facility or '(empty)'} speaks for no declared establishment",
                "MSH^1^4",
            ))
        return Actor(f"hl7:{facility}/{application}", authority.code)

    def _entry(self, text: str, sender: str, control_id: str, message_type: str, reply: str,
               status: JournalStatus, problem: Problem | None) -> JournalEntry:
        return JournalEntry(
            channel=CHANNEL,
            raw=text,
            received_at=self.clock.now(),
            status=status,
            sender=sender or None,
            control_id=control_id or None,
            message_type=message_type or None,
            ack_code=problem.ack_code if problem else "AA",
            error_code=problem.error_code if problem else None,
            error_text=problem.text if problem else None,
            reply=reply,
        )

    def _journal_failure(self, entry: JournalEntry, codec: str,
                         trail: AuditEvent | None = None) -> Reply:
        try:
            with self.uow_factory() as uow:
                uow.journal.add(entry)
                if trail is not None:
                    uow.audit.record(trail)
                uow.commit()
        except ConcurrencyError:
            # The same sender and control ID were journaled meanwhile: answer as they were.
            earlier = self._earlier_reply(entry.sender or "", entry.control_id or "", codec)
            if earlier is not None:
                return earlier
            raise
        return Reply.of(entry, codec)

    def _earlier_reply(self, sender: str, control_id: str, codec: str) -> Reply | None:
        """The stored reply of a message already journaled with this sender and control ID."""
        if not sender or not control_id:
            return None
        with self.uow_factory(read_only=True) as uow:
            earlier = uow.journal.find(sender, control_id)
        if earlier is None or earlier.reply is None:
            return None
        return Reply.of(earlier, codec)

    def _lenient_decode(self, payload: bytes) -> tuple[str, str]:
        try:
            codec = python_codec(message_charset(payload), self.default_codec)
        except UnsupportedCharsetError:
            codec = "latin-1"
        text = payload.decode(codec, errors="ignore")
        return text.replace("\r\n", "\r").replace("\n", "\r"), codec

    def _reject_unreadable(self, text: str, codec: str, problem: Problem,
                           peer: str = "") -> tuple[Reply, Message | None]:
        """Answer a message we cannot read, with the little we can take from its MSH."""
        # A NUL byte, which HL7 text never holds, is often what made it unreadable; the
        # journal and the trail must still take it, and PostgreSQL's text cannot hold one.
        text = text.replace("\x00", "\ufffd")
        message: Message | None
        try:
            message = parse(text)
            header = ReplyHeader.of(message)
        except ParseError:
            message, header = None, ReplyHeader()
        entry = self._entry(text, "", "", "", ack(header, self.clock.now(), problem),
                            JournalStatus.REJECTED, problem)
        trail = self._trail(message, AuditAction.UPDATE, set(),
                            f"{problem.ack_code} {problem.error_code}", peer,
                            {"reason": problem.text})
        return self._journal_failure(entry, codec, trail), None
