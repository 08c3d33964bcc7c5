"""Rules of the identity feed as a HIS sees them over MLLP, through the running service:
retransmissions, character sets, size limit, framing, rejections, journaling, and concurrent
senders (SQLite and PostgreSQL)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from adapters.hl7v2.mllp import FrameDecoder, frame
from mpi.model import Identifier, JournalEntry, JournalStatus
from mpi.queries import person_view, resolve_person
from tests.feeds import Peer, raw_socket, segments
from tests.hl7_messages import (
    LATIN1,
    control_id,
    cx,
    ins_number,
    observation_result,
    pdq_query,
    registration,
)
from tests.service import RunningService, start_service

CONCURRENT_ESTABLISHMENTS = ("CHRU", "ICL", "MRUN", "CCEG")
FIRST_IPP = {"CHRU": 100000, "ICL": 200000, "MRUN": 300000, "CCEG": 400000}


@pytest.fixture
def service(database_url: str, tmp_path) -> Iterator[RunningService]:  # type: ignore[no-untyped-def]
    running = start_service(database_url, tmp_path)
    yield running
    running.stop()


def receive_replies(sock: socket.socket, count: int) -> list[bytes]:
    """The next ``count`` MLLP replies on a raw socket, unframed."""
    decoder = FrameDecoder(max_message_bytes=10_000_000)
    replies: list[bytes] = []
    while len(replies) < count:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed after {len(replies)} of {count} replies")
        replies.extend(f.payload for f in decoder.feed(data))
    assert len(replies) == count, "more replies than messages"
    return replies


def exchange(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(frame(payload))
    return receive_replies(sock, 1)[0]


def msa(reply: bytes | str) -> list[str]:
    text = reply.decode("latin-1") if isinstance(reply, bytes) else reply
    return segments(text)["MSA"][0]


def err(reply: bytes | str) -> list[str]:
    text = reply.decode("latin-1") if isinstance(reply, bytes) else reply
    return segments(text)["ERR"][0]


def journal(service: RunningService) -> list[JournalEntry]:
    with service.container.uow_factory(read_only=True) as uow:
        return uow.journal.list(None, 100)


def journaled(service: RunningService, control: str) -> list[JournalEntry]:
    return [entry for entry in journal(service) if entry.control_id == control]


def record(service: RunningService, code: str, value: str):  # type: ignore[no-untyped-def]
    with service.container.uow_factory(read_only=True) as uow:
        return uow.records.by_identifier(Identifier(code, value))


# -- retransmission ------------------------------------------------------------------------


def test_a_retransmission_gets_a_byte_identical_reply_and_is_applied_once(
    service: RunningService,
) -> None:
    control = control_id("RETRY")
    message = registration("CHRU", "100001", "DUPONT", "Jean", control=control).encode()

    with raw_socket(service.mllp_port) as sock:
        first = exchange(sock, message)
        version = record(service, "CHRU", "100001").version
        again = exchange(sock, message)
    with raw_socket(service.mllp_port) as other_connection:
        from_elsewhere = exchange(other_connection, message)

    assert msa(first)[1:3] == ["AA", control]
    assert again == first
    assert from_elsewhere == first
    assert record(service, "CHRU", "100001").version == version
    entries = journaled(service, control)
    assert len(entries) == 1
    assert entries[0].status is JournalStatus.APPLIED


def test_a_retransmission_with_changed_content_is_not_applied(service: RunningService) -> None:
    control = control_id("RETRY")
    with Peer(service.mllp_port) as peer:
        first = peer.send(registration("CHRU", "100002", "DUPONT", "Jean", control=control))
        second = peer.send(registration("CHRU", "100002", "DURAND", "Jean", control=control))

    assert second == first
    stored = record(service, "CHRU", "100002")
    assert stored.demographics.birth_family_name == "DUPONT"
    assert stored.version == 1
    assert len(journaled(service, control)) == 1


def test_a_retransmission_of_a_failed_message_gets_the_same_error_and_one_journal_entry(
    service: RunningService,
) -> None:
    control = control_id("RETRY")
    bad = registration("ICL", "100003", identifiers=[cx("100003", "CHRU")],
                       control=control).encode()
    with raw_socket(service.mllp_port) as sock:
        first = exchange(sock, bad)
        again = exchange(sock, bad)

    assert msa(first)[1] == "AE"
    assert again == first
    entries = journaled(service, control)
    assert len(entries) == 1
    assert entries[0].status is JournalStatus.ERROR


# -- character sets ------------------------------------------------------------------------


def test_a_latin_1_message_is_stored_with_its_accents_and_answered_in_latin_1(
    service: RunningService,
) -> None:
    control = control_id("LATIN")
    text = registration("CHRU", "100010", "LEFÈVRE", "Hélène", "19850412", "F",
                        charset=LATIN1, used_family="GARNIER", control=control)
    with raw_socket(service.mllp_port) as sock:
        ack = exchange(sock, text.encode("latin-1"))
        query = pdq_query([("PID.5.1.1", "LEFÈVRE")], charset=LATIN1)
        answer = exchange(sock, query.encode("latin-1"))

    assert msa(ack)[1:3] == ["AA", control]
    assert segments(ack.decode("latin-1"))["MSH"][0][17] == LATIN1
    stored = record(service, "CHRU", "100010")
    assert stored.demographics.birth_family_name == "LEFÈVRE"
    assert stored.demographics.given_names[0] == "Hélène"
    # The answer names her in ISO 8859-1 bytes, as its MSH-18 says.
    assert segments(answer.decode("latin-1"))["MSH"][0][17] == LATIN1
    assert "LEFÈVRE^Hélène".encode("latin-1") in answer
    assert "LEFÈVRE".encode() not in answer
    entry = journaled(service, control)[0]
    assert "LEFÈVRE^Hélène" in entry.raw


# -- size limit ----------------------------------------------------------------------------


@pytest.fixture
def small_service(database_url: str, tmp_path) -> Iterator[RunningService]:  # type: ignore[no-untyped-def]
    running = start_service(database_url, tmp_path, mllp_max_message_bytes=4096)
    yield running
    running.stop()


def test_a_message_over_the_size_limit_is_rejected_and_the_connection_stays_usable(
    small_service: RunningService,
) -> None:
    control = control_id("BIG")
    big = registration("CHRU", "100020", control=control,
                       extra_segments=[f"NTE|1||{'X' * 6000}"])
    assert len(big.encode()) > 4096
    normal = control_id("SMALL")

    with Peer(small_service.mllp_port) as peer:
        rejected = peer.send(big)
        after = peer.send(registration("CHRU", "100021", control=normal))

    assert msa(rejected)[1] == "AR"
    assert err(rejected)[3].split("^")[0] == "207"
    assert msa(after)[1:3] == ["AA", normal]
    assert record(small_service, "CHRU", "100020") is None
    rejections = [e for e in journal(small_service) if e.status is JournalStatus.REJECTED]
    assert len(rejections) == 1
    assert rejections[0].error_code == 207


def test_a_message_over_the_size_limit_with_accents_is_rejected_as_too_large(
    small_service: RunningService,
) -> None:
    # The size limit cuts the message after its first bytes, possibly inside a two-byte UTF-8
    # character: the answer must still say "too large" (207), not "undecodable".
    head = registration("CHRU", "100022", "LEFÈVRE", "Hélène")
    filler = "é" * 3000
    big = head + f"NTE|1||{filler}\r"
    offset = 4096 - len(head.encode()) - len("NTE|1||")
    if offset % 2 == 0:  # so that the first 4096 bytes end inside an "é"
        big = head + f"NTE|1||x{filler}\r"

    with Peer(small_service.mllp_port) as peer:
        rejected = peer.send(big)

    assert msa(rejected)[1] == "AR"
    assert err(rejected)[3].split("^")[0] == "207"


# -- framing -------------------------------------------------------------------------------


def test_several_messages_in_one_write_each_get_their_ack_in_order(
    service: RunningService,
) -> None:
    controls = [control_id("BATCH") for _ in range(4)]
    wire = b"".join(
        frame(registration("CHRU", f"10003{n}", control=c).encode())
        for n, c in enumerate(controls)
    )
    with raw_socket(service.mllp_port) as sock:
        sock.sendall(wire)
        replies = receive_replies(sock, len(controls))

    assert [msa(r)[1:3] for r in replies] == [["AA", c] for c in controls]
    assert all(record(service, "CHRU", f"10003{n}") is not None for n in range(4))
    assert all(len(journaled(service, c)) == 1 for c in controls)


def test_a_message_split_into_one_byte_writes_is_answered(service: RunningService) -> None:
    control = control_id("SLOW")
    wire = frame(registration("CHRU", "100040", control=control).encode())
    with raw_socket(service.mllp_port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(len(wire)):
            sock.sendall(wire[index:index + 1])
        reply = receive_replies(sock, 1)[0]
        follow_up = control_id("SLOW")
        second = exchange(sock, registration("CHRU", "100041", control=follow_up).encode())

    assert msa(reply)[1:3] == ["AA", control]
    assert msa(second)[1:3] == ["AA", follow_up]
    assert len(journaled(service, control)) == 1


# -- rejections ----------------------------------------------------------------------------


def test_an_undeclared_sending_facility_is_rejected(service: RunningService) -> None:
    control = control_id("WHO")
    message = registration("CHRU", "100050", control=control).replace(
        "|DXCARE|CHRU|", "|DXCARE|CLINIQUE-X|", 1
    )
    with Peer(service.mllp_port) as peer:
        reply = peer.send(message)

    assert msa(reply)[1:3] == ["AR", control]
    assert err(reply)[2] == "MSH^1^4"
    assert err(reply)[3].split("^")[0] == "204"
    assert record(service, "CHRU", "100050") is None
    [entry] = journaled(service, control)
    assert entry.status is JournalStatus.REJECTED
    assert entry.sender == "CLINIQUE-X"


def test_an_identifier_of_another_establishment_is_refused_and_nothing_is_created(
    service: RunningService,
) -> None:
    control = control_id("FOREIGN")
    message = registration("ICL", "100060", identifiers=[cx("100060", "CHRU")], control=control)
    with Peer(service.mllp_port) as peer:
        reply = peer.send(message)

    assert msa(reply)[1:3] == ["AE", control]
    error = err(reply)
    assert error[2] == "PID^1^3"
    assert error[3].split("^")[0] == "207"
    assert "CHRU" in error[8]  # the reason is readable
    assert record(service, "CHRU", "100060") is None
    [entry] = journaled(service, control)
    assert entry.status is JournalStatus.ERROR
    assert entry.error_code == 207


def test_an_observation_result_is_rejected_as_an_unsupported_message_type(
    service: RunningService,
) -> None:
    control = control_id("ORU")
    with Peer(service.mllp_port) as peer:
        reply = peer.send(observation_result(control=control))

    assert msa(reply)[1:3] == ["AR", control]
    assert err(reply)[2] == "MSH^1^9^1^1"
    assert err(reply)[3].split("^")[0] == "200"
    [entry] = journaled(service, control)
    assert entry.status is JournalStatus.REJECTED
    assert entry.message_type == "ORU^R01^ORU_R01"


def test_garbage_inside_a_frame_is_rejected_and_the_connection_stays_usable(
    service: RunningService,
) -> None:
    after = control_id("AFTER")
    with raw_socket(service.mllp_port) as sock:
        garbage = exchange(sock, b"\x01\x02 this is not HL7 at all \xfe\xff\r")
        text_garbage = exchange(sock, b"GET / HTTP/1.1\r\nHost: mpi\r\n\r\n")
        reply = exchange(sock, registration("CHRU", "100070", control=after).encode())

    assert msa(garbage)[1] == "AR"
    assert msa(text_garbage)[1] == "AR"
    assert err(text_garbage)[3].split("^")[0] == "100"
    assert msa(reply)[1:3] == ["AA", after]
    rejected = [e for e in journal(service) if e.status is JournalStatus.REJECTED]
    assert len(rejected) == 2
    assert any("GET / HTTP/1.1" in e.raw for e in rejected)


def test_every_message_of_a_session_is_in_the_journal(service: RunningService) -> None:
    controls = [control_id("J") for _ in range(4)]
    sent = [
        registration("CHRU", "100080", control=controls[0]),
        registration("ICL", "100081", identifiers=[cx("100081", "CHRU")], control=controls[1]),
        observation_result(control=controls[2]),
        pdq_query([("PID.5.1.1", "DUPONT")], control=controls[3]),
    ]
    with Peer(service.mllp_port) as peer:
        for message in sent:
            peer.send(message)
        peer.send(b"not an HL7 message")

    entries = journal(service)
    assert len(entries) == len(sent) + 1
    by_control = {e.control_id: e for e in entries}
    assert [by_control[c].ack_code for c in controls] == ["AA", "AE", "AR", "AA"]
    assert [by_control[c].status for c in controls] == [
        JournalStatus.APPLIED, JournalStatus.ERROR, JournalStatus.REJECTED, JournalStatus.APPLIED
    ]
    assert by_control[None].raw.startswith("not an HL7 message")
    assert all(e.reply for e in entries)


# -- concurrency ---------------------------------------------------------------------------


def _send_all(port: int, messages: list[str], barrier: threading.Barrier,
              replies: list[str], errors: list[Exception]) -> None:
    try:
        with Peer(port) as peer:
            for message in messages:
                barrier.wait(timeout=30)
                replies.append(peer.send(message))
    except (OSError, threading.BrokenBarrierError) as exc:  # reported by the test
        errors.append(exc)
        barrier.abort()


def _run_concurrently(port: int, streams: list[list[str]]) -> list[str]:
    barrier = threading.Barrier(len(streams))
    replies: list[list[str]] = [[] for _ in streams]
    errors: list[Exception] = []
    threads = [
        threading.Thread(target=_send_all, args=(port, stream, barrier, replies[n], errors))
        for n, stream in enumerate(streams)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return [reply for per_thread in replies for reply in per_thread]


def test_four_establishments_registering_the_same_ins_at_once_make_one_person_each_time(
    database_url: str, service: RunningService,
) -> None:
    rounds = 20
    streams = [
        [
            registration(facility, str(FIRST_IPP[facility] + n), "CONCURRENT", f"Prenom{n}",
                         ins=ins_number(100 + n))
            for n in range(rounds)
        ]
        for facility in CONCURRENT_ESTABLISHMENTS
    ]

    replies = _run_concurrently(service.mllp_port, streams)

    assert [msa(r)[1] for r in replies] == ["AA"] * (rounds * len(streams))
    container = service.container
    with container.uow_factory(read_only=True) as uow:
        for n in range(rounds):
            ins = Identifier("INS-NIR", ins_number(100 + n))
            person = resolve_person(uow, container.registry, ins)
            assert person is not None
            view = person_view(uow, container.registry, person)
            ipps = {i for i in view.identifiers if i.authority in CONCURRENT_ESTABLISHMENTS}
            assert ipps == {
                Identifier(f, str(FIRST_IPP[f] + n)) for f in CONCURRENT_ESTABLISHMENTS
            }
            for ipp in ipps:
                holder = resolve_person(uow, container.registry, ipp)
                assert holder is not None and holder.id == person.id


def test_the_same_ipp_sent_on_two_connections_at_once_makes_one_record(
    database_url: str, service: RunningService,
) -> None:
    rounds = 10
    streams = [
        [registration("CHRU", str(100500 + n), "SIMULTANE", given) for n in range(rounds)]
        for given in ("Jean", "Jeanne")
    ]

    replies = _run_concurrently(service.mllp_port, streams)

    assert [msa(r)[1] for r in replies] == ["AA"] * (2 * rounds)
    container = service.container
    with container.uow_factory(read_only=True) as uow:
        for n in range(rounds):
            identifier = Identifier("CHRU", str(100500 + n))
            stored = uow.records.by_identifier(identifier)
            assert stored is not None
            assert stored.version == 2  # created by one message, updated by the other
            person = resolve_person(uow, container.registry, identifier)
            assert person is not None and person.id is not None
            assert len([r for r in uow.records.linked_to(person.id) if r.is_active]) == 1
