"""`mpi serve` with HTTP worker processes on PostgreSQL: several processes really answer on
the one port, each checking tokens; /health shows the main process's jobs; the workers stop
with `mpi serve` and never outlive it. And the client check that tokens skip for a few
seconds, on both databases."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from adapters.auth.service import AuthService
from adapters.auth.tokens import TokenRefused
from tests.service import child_pids, is_alive, start_service


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _server_side_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the server's end of the loopback TCP connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port):
            return int(fields[9])
    return None


def _answering_pid(port: int, candidates: set[int], headers: dict[str, str],
                   held: list[socket.socket]) -> int | None:
    """Open a connection, ask for $ihe-pix of an unknown patient (token checked, 404 from
    the index) on it, keep it open (in ``held``) and say which process holds its other end."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    held.append(sock)
    request = ("GET /fhir/Patient/$ihe-pix?sourceIdentifier=urn:oid:1.2.250.1.999.54.1%7C"
               "999999999 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n")
    sock.sendall(request.encode("ascii"))
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        assert chunk, answer
        answer += chunk
    status = answer.split(b" ", 2)[1]
    assert status == b"404", answer[:500]
    inode = _server_side_inode(port, sock.getsockname()[1])
    assert inode is not None
    owners = [pid for pid in candidates if inode in _socket_inodes(pid)]
    return owners[0] if owners else None


@pytest.mark.postgres
def test_several_worker_processes_answer_http_and_show_the_jobs_of_the_main_process(
        postgres_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    service = start_service(postgres_url, tmp_path, http_workers=2)
    held: list[socket.socket] = []
    answered_by: set[int] = set()
    try:
        workers = {pid for pid in child_pids(os.getpid()) if is_alive(pid)}
        headers = service.bearer("system/Patient.rs")
        for _ in range(300):
            pid = _answering_pid(service.http_port, workers, headers, held)
            assert pid is not None and pid != os.getpid()
            answered_by.add(pid)
            if len(answered_by) >= 2:
                break
        assert len(answered_by) >= 2, answered_by

        # The outbox dispatcher runs in the main process; a worker's /health shows its runs.
        deadline = time.monotonic() + 20
        while True:
            health = httpx.get(service.http_base + "/health", timeout=10)
            assert health.status_code == 200, health.text
            runs = {job["name"]: job["runs"] for job in health.json()["jobs"]}
            if any(runs.values()):
                break
            assert time.monotonic() < deadline, runs
            time.sleep(0.2)
    finally:
        for sock in held:
            sock.close()
        service.stop()
    deadline = time.monotonic() + 30
    while any(is_alive(pid) for pid in answered_by):
        assert time.monotonic() < deadline, "HTTP workers outlived stop()"
        time.sleep(0.1)


@pytest.mark.postgres
def test_http_workers_stop_with_serve_and_never_outlive_a_killed_one(
        postgres_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from adapters.sql.engine import create_engine_for
    from adapters.sql.migrate import upgrade
    from tests.integration.test_cli import environment, free_port, get_health, mpi_executable

    name = f"mpi_test_{os.getpid()}_http_workers"
    url = postgres_server.create(name)
    engine = create_engine_for(url)
    upgrade(engine)
    engine.dispose()
    http_port = free_port()
    env = {**environment(), "MPI_DATABASE_URL": url, "MPI_WORKERS": "0",
           "MPI_HTTP_WORKERS": "2"}
    command = [mpi_executable(), "serve", "--host", "127.0.0.1", "--mllp-port",
               str(free_port()), "--http-port", str(http_port), "--dicom-port",
               str(free_port()), "--data-dir", str(tmp_path / "data")]

    def start(log: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
        process = subprocess.Popen(command, env=env, stdout=log.open("w"),
                                   stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if get_health(http_port)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        # the spawn start method adds a resource tracker: the HTTP workers are the others
        workers = {pid for pid in child_pids(process.pid) if is_alive(pid)}
        assert len(workers) >= 2, log.read_text()
        return process, workers

    try:
        # SIGTERM: `mpi serve` stops its workers and exits cleanly.
        first, first_workers = start(tmp_path / "first.log")
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0, (tmp_path / "first.log").read_text()
        # the workers were joined before it exited; multiprocessing's resource tracker (a
        # child too) exits when it reads the end of its pipe, a moment after its parent
        deadline = time.monotonic() + 10
        while any(is_alive(pid) for pid in first_workers):
            assert time.monotonic() < deadline, "a child outlived `mpi serve` stopped cleanly"
            time.sleep(0.1)

        # SIGKILL: no chance to stop them; they notice, exit and free the port.
        second, second_workers = start(tmp_path / "second.log")
        second.send_signal(signal.SIGKILL)
        second.wait(10)
        deadline = time.monotonic() + 15
        while any(is_alive(pid) for pid in second_workers):
            assert time.monotonic() < deadline, "HTTP workers outlived their server"
            time.sleep(0.2)
        with pytest.raises(OSError):
            get_health(http_port)

        third, _ = start(tmp_path / "third.log")
        third.send_signal(signal.SIGTERM)
        assert third.wait(60) == 0
    finally:
        for process in (locals().get("first"), locals().get("second"), locals().get("third")):
            if process is not None and process.poll() is None:
                process.kill()
        postgres_server.drop(name)


def test_a_client_revoked_elsewhere_is_refused_within_the_check_delay_at_once_here(
        database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    service = start_service(database_url, tmp_path)
    try:
        container = service.container
        now = [1000.0]
        # another process's view of the same database: its own service, its own clock
        here = AuthService(container.uow_factory, container.auth.tokens, container.registry,
                           container.clock, client_check_seconds=5.0, monotonic=lambda: now[0])
        token = service.token("system/Patient.rs", name="his-elsewhere")
        assert here.authenticate_bearer(token, None).name == service.clients["his-elsewhere"]
        container.auth.revoke_client("his-elsewhere")  # as `mpi client revoke` would
        now[0] += 4.0
        assert here.authenticate_bearer(token, None).kind == "client"  # not asked again yet
        now[0] += 1.5
        with pytest.raises(TokenRefused):
            here.authenticate_bearer(token, None)
        with pytest.raises(TokenRefused):  # and no longer believed active
            here.authenticate_bearer(token, None)

        # revoked by the very process that checks: refused at once
        other = service.token("system/Patient.rs", name="his-here")
        assert here.authenticate_bearer(other, None).kind == "client"
        here.revoke_client("his-here")
        with pytest.raises(TokenRefused):
            here.authenticate_bearer(other, None)
    finally:
        service.stop()
