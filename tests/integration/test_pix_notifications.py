"""PIX Update Notification (ITI-10): the service sends ADT^A31 over MLLP to the consumers
subscribed to the domains whose identifiers changed (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE
from adapters.hl7v2.mllp import Frame, MLLPServer, PeerInfo
from adapters.sql.tables import notifications
from mpi.model import Identifier, master_id_of
from mpi.queries import resolve_person
from tests.feeds import Peer, segments
from tests.hl7_messages import MASTER_OID, ident, identifiers_of, ins_number, registration
from tests.service import RunningService, start_service

HOST = "127.0.0.1"
HELENE_INS = ins_number(7, sex=2)


class FakeConsumer:
    """A PIX consumer: an MLLP server on its own event loop that keeps what it receives and
    acknowledges it with MSA|AA."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[str] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = MLLPServer(self._handle, host=HOST, port=port,
                                  on_handler_error=lambda frame, exc: b"MSA|AE")
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(10)
        self.port = self._server.port

    async def _handle(self, received: Frame, peer: PeerInfo) -> bytes:
        text = received.payload.decode("utf-8")
        with self._lock:
            self.received.append(text)
        control = segments(text)["MSH"][0][9]
        return (f"MSH|^~\\&|PACS|CHRU|MPI|GCS|20240304080000||ACK^A31^ACK|R{control}|P|2.5\r"
                f"MSA|AA|{control}\r").encode()

    def messages(self) -> list[str]:
        with self._lock:
            return list(self.received)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._server.close(), self._loop).result(15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


def free_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def authorities_with(tmp_path: Path, consumers: list[dict[str, object]]) -> Path:
    """The fixture authorities file followed by ``[[consumer]]`` tables."""
    text = DEFAULT_AUTHORITIES_FILE.read_text(encoding="utf-8")
    for consumer in consumers:
        domains = ", ".join(f'"{d}"' for d in consumer["domains"])  # type: ignore[attr-defined]
        text += (
            f'\n[[consumer]]\nname = "{consumer["name"]}"\nhost = "{HOST}"\n'
            f'port = {consumer["port"]}\ndomains = [{domains}]\n'
            f'receiving_application = "PACS"\nreceiving_facility = "{consumer["name"]}"\n'
        )
    path = tmp_path / "authorities.toml"
    path.write_text(text, encoding="utf-8")
    return path


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll until ``condition`` holds; the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def a31s(consumer: FakeConsumer) -> list[dict[str, list[list[str]]]]:
    return [segments(m) for m in consumer.messages()]


def master_id(service: RunningService, code: str, value: str) -> str:
    container = service.container
    with container.uow_factory(read_only=True) as uow:
        person = resolve_person(uow, container.registry, Identifier(code, value))
    assert person is not None and person.id is not None
    return master_id_of(person.id)


def pending(service: RunningService, consumer: str) -> int:
    """Notifications not yet delivered to a consumer."""
    with service.container.uow_factory(read_only=True) as uow:
        return uow.notifications.pending_count(consumer)


def attempts(service: RunningService, consumer: str) -> int:
    """Failed delivery attempts recorded for a consumer."""
    column = notifications.c
    with service.container.engine.connect() as connection:
        total = connection.execute(
            select(func.coalesce(func.sum(column.attempts), 0)).where(column.consumer == consumer)
        ).scalar_one()
    return int(total)


def send(service: RunningService, message: str) -> None:
    with Peer(service.mllp_port) as peer:
        reply = segments(peer.send(message))
    assert reply["MSA"][0][1] == "AA", reply


@pytest.fixture
def consumers() -> Iterator[list[FakeConsumer]]:
    """Fake consumers created by a test, stopped at its end."""
    started: list[FakeConsumer] = []
    yield started
    for consumer in started:
        consumer.stop()


def test_a_registration_notifies_the_consumer_of_its_domains_with_an_a31(
    database_url: str, tmp_path: Path, consumers: list[FakeConsumer],
) -> None:
    pacs = FakeConsumer()
    consumers.append(pacs)
    authorities = authorities_with(tmp_path, [
        {"name": "PACS-CHRU", "port": pacs.port, "domains": ["CHRU", "GCS", "INS-NIR"]},
    ])
    service = start_service(database_url, tmp_path, authorities=authorities)
    try:
        send(service, registration("CHRU", "100001", "LEFEVRE", "Helene", "19850412", "F",
                                   ins=HELENE_INS))
        wait_for(lambda: len(pacs.messages()) >= 1)
        master = master_id(service, "CHRU", "100001")
    finally:
        service.stop()

    [a31] = a31s(pacs)
    assert a31["MSH"][0][8] == "ADT^A31^ADT_A05"
    assert a31["MSH"][0][4:6] == ["PACS", "PACS-CHRU"]
    assert identifiers_of(a31["PID"][0]) == {
        ident("100001", "CHRU"),
        ident(HELENE_INS, "INS-NIR"),
        (master, "GCS-ESANTE-LORRAINE", MASTER_OID),
    }
    assert a31["PV1"][0][2] == "N"


def test_a_registration_joining_a_person_notifies_only_the_consumers_of_the_changed_domains(
    database_url: str, tmp_path: Path, consumers: list[FakeConsumer],
) -> None:
    chru_pacs, icl_pacs, mrun_pacs = FakeConsumer(), FakeConsumer(), FakeConsumer()
    consumers.extend([chru_pacs, icl_pacs, mrun_pacs])
    authorities = authorities_with(tmp_path, [
        {"name": "PACS-CHRU", "port": chru_pacs.port, "domains": ["CHRU", "GCS", "INS-NIR"]},
        {"name": "PACS-ICL", "port": icl_pacs.port, "domains": ["ICL", "CHRU"]},
        {"name": "PACS-MRUN", "port": mrun_pacs.port, "domains": ["MRUN"]},
    ])
    service = start_service(database_url, tmp_path, authorities=authorities)
    try:
        send(service, registration("CHRU", "100001", "LEFEVRE", "Helene", "19850412", "F",
                                   ins=HELENE_INS))
        wait_for(lambda: len(chru_pacs.messages()) == 1 and len(icl_pacs.messages()) == 1)

        send(service, registration("ICL", "200001", "LEFEVRE", "Helene", "19850412", "F",
                                   ins=HELENE_INS))
        wait_for(lambda: len(icl_pacs.messages()) == 2)
        # Let every delivery loop run several rounds before looking at what did not come.
        time.sleep(0.5)
    finally:
        service.stop()

    first, second = a31s(icl_pacs)
    assert identifiers_of(first["PID"][0]) == {ident("100001", "CHRU")}
    assert identifiers_of(second["PID"][0]) == {ident("100001", "CHRU"), ident("200001", "ICL")}
    assert second["PV1"][0][2] == "N"
    # The CHRU consumer's domains did not change when ICL joined: one message only.
    assert len(chru_pacs.messages()) == 1
    # Nobody has an MRUN identifier: nothing for that consumer.
    assert mrun_pacs.messages() == []


def test_a_consumer_that_is_down_delays_nobody_and_gets_its_notification_when_it_is_up(
    database_url: str, tmp_path: Path, consumers: list[FakeConsumer],
) -> None:
    up = FakeConsumer()
    consumers.append(up)
    down_port = free_port()
    authorities = authorities_with(tmp_path, [
        {"name": "PACS-UP", "port": up.port, "domains": ["CHRU"]},
        {"name": "PACS-DOWN", "port": down_port, "domains": ["CHRU"]},
    ])
    service = start_service(database_url, tmp_path, authorities=authorities)
    try:
        send(service, registration("CHRU", "100001", "DUPONT", "Jean"))
        wait_for(lambda: len(up.messages()) == 1)
        send(service, registration("CHRU", "100002", "MARTIN", "Luc"))
        wait_for(lambda: len(up.messages()) == 2)
        # Both were delivered to PACS-UP while PACS-DOWN still owes both, after failed tries.
        wait_for(lambda: attempts(service, "PACS-DOWN") >= 2)
        assert pending(service, "PACS-DOWN") == 2
        # A delivery is marked sent once its ACK is read: shortly after the consumer has it.
        wait_for(lambda: pending(service, "PACS-UP") == 0)

        late = FakeConsumer(down_port)
        consumers.append(late)
        wait_for(lambda: len(late.messages()) == 2 and pending(service, "PACS-DOWN") == 0)
    finally:
        service.stop()

    delivered = sorted(sorted(identifiers_of(m["PID"][0])) for m in a31s(late))
    assert delivered == [[ident("100001", "CHRU")], [ident("100002", "CHRU")]]
    assert len(up.messages()) == 2
