"""Backup under load, wipe, restore (SQLite: the sqlite3 online backup API; PostgreSQL:
pg_dump and pg_restore): the fixity check of `mpi archive verify --all` finds every object
the restored index names, and the index is consistent (every applied message's record is
there, linked). `mpi backup` runs as a command beside the running service, as a scheduled
backup does; the restore and the verification call the same functions in this process."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

from sqlalchemy import func, select, text

from adapters.backup import restore
from adapters.bootstrap import bootstrap
from adapters.dicom.preservation import check_fixity
from adapters.sql.engine import create_engine_for
from adapters.sql.tables import inbound_messages, links, source_records
from tests.drills.harness import (
    FeedSender,
    ServeProcess,
    c_store,
    ct_object,
    journal_facts,
    mpi_executable,
    realistic_feed,
)
from tests.service import make_settings

MESSAGES = 200
OBJECTS = 4


def mpi(server: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([mpi_executable(), *args], env=server.env, capture_output=True,
                          text=True, timeout=120, check=False, cwd=server.workdir)


def wipe(database_url: str, data: Path) -> None:
    """What a lost server leaves: no index, no objects."""
    shutil.rmtree(data / "archive")
    if database_url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(database_url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        return
    engine = create_engine_for(database_url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def test_a_backup_taken_under_load_restores_a_consistent_index_and_every_object(
        database_url: str, tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, database_url, {"MPI_WORKERS": "0"})
    backups = tmp_path / "backup"
    halfway = threading.Event()
    sender = FeedSender(server.ports["mllp"], realistic_feed(MESSAGES), 4,
                        on_ack=lambda acked: acked >= MESSAGES // 4 and halfway.set())
    try:
        server.start()
        feeding = threading.Thread(target=sender.run, daemon=True)
        feeding.start()
        for number in range(OBJECTS // 2):
            assert c_store(server.ports["dicom"], ct_object(number)) == 0
        assert halfway.wait(120)
        acked_before = sender.figures.acked
        made = mpi(server, "backup", str(backups))  # while the feed goes on
        acked_after = sender.figures.acked
        for number in range(OBJECTS // 2, OBJECTS):
            assert c_store(server.ports["dicom"], ct_object(number)) == 0
        feeding.join(180)
    finally:
        server.stop()
    assert made.returncode == 0, made.stderr
    manifest = json.loads((backups / "manifest.json").read_text())
    assert manifest["instances"] >= OBJECTS // 2
    assert sender.figures.acked == MESSAGES
    assert acked_before < MESSAGES and acked_after > acked_before  # taken under load

    wipe(database_url, tmp_path / "data")
    settings = make_settings(database_url, tmp_path / "data")  # the server's own
    restored = restore(settings, backups)
    assert restored.instances == manifest["instances"]
    container = bootstrap(settings)
    try:  # what `mpi archive verify --all` does
        c = container
        with c.uow_factory(read_only=True) as uow:
            due = len(uow.archive.fixity_due(10_000_000))
        verified = check_fixity(c.uow_factory, c.dicom.blobs, c.clock, c.audit, limit=due)
    finally:
        container.close()
    assert due == verified.checked == manifest["instances"] and verified.failed == []

    facts = journal_facts(database_url)
    engine = create_engine_for(database_url)
    with engine.connect() as connection:
        records = connection.execute(select(func.count()).select_from(source_records).where(
            source_records.c.value != "DRILL1")).scalar()  # not the scanner's patient
        linked = connection.execute(select(func.count()).select_from(links)).scalar()
        journaled = connection.execute(
            select(func.count()).select_from(inbound_messages)).scalar()
    engine.dispose()
    # a snapshot of a moment of the feed: what was acknowledged before it at least, every
    # applied message's
    # record there and linked, nothing applied twice
    assert acked_before <= len(facts.applied_per_message) <= MESSAGES
    assert set(facts.applied_per_message.values()) == {1}
    assert records == len(facts.applied_per_message) == journaled
    assert linked == records + 1  # and the scanner's patient, linked too
