"""`mpi serve` with HL7 worker processes: connections handed over by the main process are
answered in order by the workers, and the index is the one a single process would build."""

from __future__ import annotations

import threading

import pytest

from mpi.model import Identifier
from mpi.queries import person_view, resolve_person
from tests.feeds import Peer, segments
from tests.hl7_messages import ins_number, registration
from tests.service import start_service


@pytest.fixture
def service(database_url, tmp_path):  # type: ignore[no-untyped-def]
    running = start_service(database_url, tmp_path, workers=2)
    yield running
    running.stop()


def test_worker_processes_answer_every_connection_in_order(service) -> None:  # type: ignore[no-untyped-def]
    sites = ("CHRU", "ICL", "MRUN", "CCEG")
    first_ipp = {"CHRU": 700000, "ICL": 710000, "MRUN": 720000, "CCEG": 730000}
    replies: dict[str, list[str]] = {site: [] for site in sites}

    def feed(site: str) -> None:
        with Peer(service.mllp_port) as peer:
            for n in range(15):
                message = registration(site, str(first_ipp[site] + n), "WORKER", f"Prenom{n}",
                                       ins=ins_number(300 + n))
                replies[site].append(peer.send(message))

    threads = [threading.Thread(target=feed, args=(site,)) for site in sites]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    for site in sites:
        assert [segments(r)["MSA"][0][1] for r in replies[site]] == ["AA"] * 15
    container = service.container
    with container.uow_factory(read_only=True) as uow:
        for n in range(15):
            person = resolve_person(uow, container.registry,
                                    Identifier("INS-NIR", ins_number(300 + n)))
            assert person is not None
            view = person_view(uow, container.registry, person)
            assert {i for i in view.identifiers if i.authority in sites} == {
                Identifier(site, str(first_ipp[site] + n)) for site in sites
            }
