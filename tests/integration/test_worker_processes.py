"""`mpi serve` with HL7 worker processes: connections handed over by the main process are
answered in order by the workers, and the index is the one a single process would build."""

from __future__ import annotations

import threading

import pytest

from adapters.sql.engine import create_engine_for
from adapters.sql.migrate import upgrade
from mpi.model import Identifier
from mpi.queries import person_view, resolve_person
from tests.feeds import Peer, segments
from tests.hl7_messages import ins_number, registration
from tests.service import child_pids, is_alive, start_service


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


def test_workers_do_not_outlive_a_killed_server_and_a_restart_serves_again(
        postgres_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`mpi serve` killed with SIGKILL (no chance to stop its workers): the workers notice
    and exit, closing the connections they held; a new server on the same database and port
    answers, with fresh workers of its own, and no orphan piles up."""
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    from tests.integration.test_cli import environment, free_port, get_health, mpi_executable

    name = f"mpi_test_{os.getpid()}_orphans"
    url = postgres_server.create(name)
    engine = create_engine_for(url)
    upgrade(engine)
    engine.dispose()
    mllp_port, http_port = free_port(), free_port()
    env = {**environment(), "MPI_DATABASE_URL": url, "MPI_WORKERS": "2"}
    command = [mpi_executable(), "serve", "--host", "127.0.0.1", "--mllp-port",
               str(mllp_port), "--http-port", str(http_port), "--dicom-port",
               str(free_port()), "--data-dir", str(tmp_path / "data")]

    def start(log: Path) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, env=env, stdout=log.open("w"),
                                   stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if get_health(http_port)[0] == 200:
                    return process
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

    first = start(tmp_path / "first.log")
    try:
        with Peer(mllp_port) as peer:
            reply = segments(peer.send(registration("CHRU", "810001", "ORPHAN", "Avant")))
            assert reply["MSA"][0][1] == "AA"
            workers = {pid for pid in child_pids(first.pid) if is_alive(pid)}
            # the spawn start method adds a resource tracker: the HL7 workers are the others
            assert len(workers) >= 2
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            deadline = time.monotonic() + 15
            while any(is_alive(pid) for pid in workers):
                assert time.monotonic() < deadline, "HL7 workers outlived their server"
                time.sleep(0.2)
            # the connection they held is closed: the sender sees it and reconnects
            try:
                answer = peer.send(registration("CHRU", "810002", "ORPHAN", "Pendant"))
            except OSError:  # reset by the worker's exit
                answer = ""
            assert answer == ""

        second = start(tmp_path / "second.log")
        try:
            with Peer(mllp_port) as peer:
                reply = segments(peer.send(registration("CHRU", "810003", "ORPHAN", "Apres")))
                assert reply["MSA"][0][1] == "AA"
            assert all(not is_alive(pid) for pid in workers)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        postgres_server.drop(name)
