"""Load limits: 50 MLLP connections and 50 DICOM associations at once are all served, one more
is refused politely (the MLLP connection closed at once, A-ASSOCIATE-RJ transient), an HTTP
request beyond the concurrency limit gets 503 with Retry-After, and every one is answered."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from starlette.types import Receive, Scope, Send

from adapters.http.app import ConcurrencyLimit
from tests.feeds import Peer, segments
from tests.hl7_messages import registration
from tests.integration.test_operations import scrape
from tests.service import RunningService, start_service

AT_ONCE = 50


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path, mllp_max_connections=AT_ONCE,
                            dicom_max_associations=AT_ONCE, http_max_concurrency=4)
    yield running
    running.stop()


def test_fifty_mllp_connections_are_served_and_one_more_is_closed_at_once(
        service: RunningService) -> None:
    peers = [Peer(service.mllp_port) for _ in range(AT_ONCE)]
    try:
        replies: list[str] = [""] * AT_ONCE

        def send(index: int) -> None:
            replies[index] = peers[index].send(registration("CHRU", str(830000 + index),
                                                            "CHARGE"))

        threads = [threading.Thread(target=send, args=(i,)) for i in range(AT_ONCE)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert [segments(r)["MSA"][0][1] for r in replies] == ["AA"] * AT_ONCE

        extra = socket.create_connection(("127.0.0.1", service.mllp_port), timeout=10)
        with extra:
            assert extra.recv(1024) == b""  # closed by the server, nothing read
    finally:
        for peer in peers:
            peer.close()
    # Once the others are gone, a new connection is served again.
    with Peer(service.mllp_port) as peer:
        assert segments(peer.send(registration("CHRU", "839999", "CHARGE")))["MSA"][0][1] == "AA"
    assert scrape(service)[("mpi_mllp_connections_refused_total", ())] == 1


def test_fifty_dicom_associations_are_accepted_and_one_more_is_rejected_as_transient(
        service: RunningService) -> None:
    scu = AE(ae_title="CHRU")
    scu.add_requested_context(Verification)
    associations = []
    try:
        for _ in range(AT_ONCE):
            association = scu.associate("127.0.0.1", service.dicom_port, ae_title="VNA")
            assert association.is_established
            associations.append(association)
        extra = scu.associate("127.0.0.1", service.dicom_port, ae_title="VNA")
        assert extra.is_rejected
        answer = extra.acceptor.primitive
        # Rejected-transient (2), by the service provider's presentation layer (3), local
        # limit exceeded (2): the modality tries again later.
        assert (answer.result, answer.result_source, answer.diagnostic) == (0x02, 0x03, 0x02)
        assert all(a.send_c_echo().Status == 0 for a in associations[:5])
    finally:
        for association in associations:
            association.release()
    again = scu.associate("127.0.0.1", service.dicom_port, ae_title="VNA")
    assert again.is_established
    again.release()
    found = scrape(service)
    assert found[("mpi_dicom_associations_total", (("outcome", "rejected-limit"),))] == 1
    assert found[("mpi_dicom_associations_total", (("outcome", "accepted"),))] == AT_ONCE + 1


def test_an_http_flood_is_answered_whole_each_request_200_or_503_with_retry_after(
        service: RunningService) -> None:
    headers = service.bearer("system/Patient.rs", "CHRU")
    url = service.http_base + "/fhir/Patient?family=charge"
    statuses: list[int] = []
    refusals: list[httpx.Response] = []

    async def flood() -> None:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            answers = await asyncio.gather(*(client.get(url, headers=headers)
                                             for _ in range(200)))
        for answer in answers:
            statuses.append(answer.status_code)
            if answer.status_code == 503:
                refusals.append(answer)

    asyncio.run(flood())
    assert len(statuses) == 200 and set(statuses) <= {200, 503}
    for refusal in refusals:
        assert refusal.headers["retry-after"] == "1"
        assert refusal.json()["resourceType"] == "OperationOutcome"
    # The health checks are answered whatever the load.
    assert httpx.get(service.http_base + "/health/live").status_code == 200
    overloaded = scrape(service).get(("mpi_http_overloaded_total", ()), 0)
    assert overloaded == len(refusals)


def test_a_request_beyond_the_concurrency_limit_gets_503_at_once() -> None:
    """Two requests held inside the application: a third is refused without waiting; once
    one ends, the next is served."""
    release = asyncio.Event()
    inside = 0

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal inside
        inside += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = ConcurrencyLimit(held, limit=2)

    async def scenario() -> list[Any]:
        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://mpi") as client:
            first = asyncio.create_task(client.get("/fhir/Patient"))
            second = asyncio.create_task(client.get("/api/review"))
            while inside < 2:
                await asyncio.sleep(0.01)
            third = await client.get("/fhir/Patient")
            health = asyncio.create_task(client.get("/health/live"))
            release.set()
            return [await first, await second, third, await health,
                    await client.get("/api/review")]

    first, second, third, health, after = asyncio.run(scenario())
    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 503 and third.headers["retry-after"] == "1"
    assert third.json()["issue"][0]["code"] == "transient"
    assert health.status_code == 200  # never limited
    assert after.status_code == 200
