"""The `mpi` command as an operator runs it: authorities, schema upgrade, journal listing,
showing and replaying, and `mpi serve` stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE
from adapters.bootstrap import bootstrap
from adapters.container import Container
from adapters.sql.engine import create_engine_for, default_sqlite_url
from adapters.sql.migrate import current_revision, head_revision
from adapters.sql.tables import metadata
from mpi.model import Identifier, JournalStatus
from mpi.queries import resolve_record
from tests.conftest import PostgresServer
from tests.feeds import Peer, segments
from tests.hl7_messages import control_id, merge, registration
from tests.service import make_settings


def mpi_executable() -> str:
    found = Path(sys.executable).parent / "mpi"
    if found.exists():
        return str(found)
    which = shutil.which("mpi")
    if which is None:
        pytest.skip("the mpi command is not installed")
    return which


def environment(**values: str) -> dict[str, str]:
    """The test's environment without any MPI_* setting, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPI_")}
    env.update(values)
    return env


def mpi(*args: str, env: dict[str, str], timeout: float = 30,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([mpi_executable(), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=cwd)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def container(data_dir: Path) -> Iterator[Container]:
    """The service's application on the SQLite database of ``data_dir``, without servers."""
    built = bootstrap(make_settings(default_sqlite_url(data_dir), data_dir), migrate=True)
    yield built
    built.close()


def handle(container: Container, message: str) -> dict[str, list[list[str]]]:
    return segments(container.hl7.handle(message.encode("utf-8")).text)


# -- authorities and schema ----------------------------------------------------------------


def test_authorities_lists_the_nine_domains_with_their_oids(tmp_path: Path) -> None:
    result = mpi("authorities", env=environment())

    assert result.returncode == 0, result.stderr
    listed = {}
    for line in result.stdout.splitlines()[1:]:
        if not line.strip():
            break  # the domains' table ends; consumers and C-MOVE destinations follow
        words = line.split()
        if len(words) >= 3 and words[0] != "consumer":
            listed[words[0]] = (words[1], words[2])
    assert listed == {
        "CHRU": ("establishment", "1.2.250.1.999.54.1"),
        "ICL": ("establishment", "1.2.250.1.999.54.2"),
        "MRUN": ("establishment", "1.2.250.1.999.54.3"),
        "CCEG": ("establishment", "1.2.250.1.999.54.4"),
        "GCS": ("master", "1.2.250.1.999.54.0"),
        "INS-NIR": ("national", "1.2.250.1.213.1.4.8"),
        "INS-NIA": ("national", "1.2.250.1.213.1.4.9"),
        "INS-NIR-TEST": ("national", "1.2.250.1.213.1.4.10"),
        "INS-NIR-DEMO": ("national", "1.2.250.1.213.1.4.11"),
    }
    assert "MSH-4 CHRU" in result.stdout


def test_authorities_lists_the_consumers_of_the_file_given(tmp_path: Path) -> None:
    source = DEFAULT_AUTHORITIES_FILE
    path = tmp_path / "authorities.toml"
    path.write_text(
        source.read_text(encoding="utf-8")
        + '\n[[consumer]]\nname = "PACS-CHRU"\nhost = "10.0.0.12"\nport = 2576\n'
          'domains = ["CHRU", "GCS"]\n',
        encoding="utf-8",
    )

    result = mpi("authorities", "--authorities", str(path), env=environment())

    assert result.returncode == 0, result.stderr
    assert "consumer PACS-CHRU: 10.0.0.12:2576 domains CHRU, GCS" in result.stdout


def test_db_upgrade_creates_the_schema_of_an_sqlite_data_folder(data_dir: Path) -> None:
    result = mpi("db", "upgrade", env=environment(MPI_DATA_DIR=str(data_dir)))

    assert result.returncode == 0, result.stderr
    assert head_revision() in result.stdout
    engine = create_engine_for(default_sqlite_url(data_dir))
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            assert set(metadata.tables) <= set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_db_upgrade_migrates_a_fresh_postgresql_database_that_the_journal_refused_before(
    postgres_server: PostgresServer,
) -> None:
    name = f"mpi_test_{os.getpid()}_cli"
    url = postgres_server.create(name)
    try:
        env = environment(MPI_DATABASE_URL=url)
        refused = mpi("journal", env=env)
        assert refused.returncode != 0
        assert "mpi db upgrade" in refused.stderr

        result = mpi("db", "upgrade", env=env)

        assert result.returncode == 0, result.stderr
        assert head_revision() in result.stdout
        engine = create_engine_for(url)
        try:
            assert current_revision(engine) == head_revision()
        finally:
            engine.dispose()
        listed = mpi("journal", env=env)
        assert listed.returncode == 0, listed.stderr
        # An empty journal: its table's header and no row.
        assert [line.split()[0] for line in listed.stdout.strip().splitlines()] == ["ID"]
    finally:
        postgres_server.drop(name)


# -- journal -------------------------------------------------------------------------------


def journal_ids(output: str) -> list[int]:
    """The entry numbers of a journal listing (the rows under its header line)."""
    header, *rows = output.splitlines()
    assert header.split()[0] == "ID"
    return [int(line.split()[0]) for line in rows if line.strip()]


def test_journal_lists_shows_and_replays_a_failed_merge_once_its_cause_is_fixed(
    container: Container, data_dir: Path,
) -> None:
    env = environment(MPI_DATA_DIR=str(data_dir))
    accepted = control_id("OK")
    assert handle(container, registration("CHRU", "100009", control=accepted))["MSA"][0][1] == "AA"
    failing = control_id("A40")
    reply = handle(container, merge("CHRU", "100010", "100011", control=failing))
    assert reply["MSA"][0][1] == "AE"
    assert reply["ERR"][0][2] == "MRG^1^1"
    with container.uow_factory(read_only=True) as uow:
        [entry] = [e for e in uow.journal.list(None, 10) if e.control_id == failing]
    assert entry.id is not None

    listed = mpi("journal", env=env)
    assert listed.returncode == 0, listed.stderr
    assert journal_ids(listed.stdout) == [entry.id]  # failures only
    line = listed.stdout.splitlines()[1]  # under the header
    assert failing in line and "error" in line and "AE 204" in line and "CHRU" in line

    shown = mpi("journal", "show", str(entry.id), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "MRG|100011^^^CHRU&1.2.250.1.999.54.1&ISO^PI" in shown.stdout
    assert "--- reply" in shown.stdout
    assert f"MSA|AE|{failing}" in shown.stdout

    still_failing = mpi("journal", "replay", str(entry.id), env=env)
    assert still_failing.returncode == 1
    assert "still fails" in still_failing.stderr
    with container.uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("CHRU", "100010")) is None

    # The cause is fixed: the record to retire now exists.
    assert handle(container, registration("CHRU", "100011"))["MSA"][0][1] == "AA"
    replayed = mpi("journal", "replay", str(entry.id), env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert f"entry {entry.id} applied" in replayed.stdout

    assert journal_ids(mpi("journal", env=env).stdout) == []
    everything = mpi("journal", "--all", env=env).stdout
    assert entry.id in journal_ids(everything)
    assert re.search(rf"^\s*{entry.id} .*replayed", everything, re.MULTILINE)
    with container.uow_factory(read_only=True) as uow:
        survivor = resolve_record(uow, Identifier("CHRU", "100011"))
        assert survivor is not None
        assert survivor.identifier == Identifier("CHRU", "100010")
        assert uow.journal.get(entry.id).status is JournalStatus.REPLAYED  # type: ignore[union-attr]

    again = mpi("journal", "replay", str(entry.id), env=env)
    assert again.returncode != 0
    assert "applied already" in again.stderr


def test_journal_show_and_replay_of_an_unknown_entry_fail(
    container: Container, data_dir: Path,
) -> None:
    env = environment(MPI_DATA_DIR=str(data_dir))

    shown = mpi("journal", "show", "9999", env=env)
    replayed = mpi("journal", "replay", "9999", env=env)

    assert shown.returncode != 0 and "no journal entry 9999" in shown.stderr
    assert replayed.returncode != 0 and "no journal entry 9999" in replayed.stderr


# -- serve ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_health(port: int) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
        return response.status, json.loads(response.read())


def test_serve_answers_health_and_mllp_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    mllp_port, http_port = free_port(), free_port()
    data = tmp_path / "serve"
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [mpi_executable(), "serve", "--host", "127.0.0.1", "--mllp-port", str(mllp_port),
         "--http-port", str(http_port), "--data-dir", str(data)],
        env=environment(), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        health: tuple[int, dict[str, object]] | None = None
        while health is None:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                health = get_health(http_port)
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        status, body = health
        assert status == 200
        assert body["status"] == "ok"
        assert body["database"] is True

        control = control_id("SERVE")
        with Peer(mllp_port) as peer:
            reply = segments(peer.send(registration("CHRU", "100001", control=control)))
        assert reply["MSA"][0][1:3] == ["AA", control]
        # The background jobs run: the registration's events leave the outbox.
        deadline = time.monotonic() + 10
        while True:
            jobs = {job["name"]: job for job in get_health(http_port)[1]["jobs"]}  # type: ignore[union-attr]
            if jobs["outbox"]["runs"] and jobs["outbox"]["backlog"] == 0:
                break
            assert time.monotonic() < deadline, jobs
            time.sleep(0.1)
        assert jobs["outbox"]["last_error"] is None

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        log.close()
    assert (data / "mpi.sqlite3").exists()
