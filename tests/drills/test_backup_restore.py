"""Backup under load, wipe, restore (SQLite: the sqlite3 online backup API; PostgreSQL:
pg_dump and pg_restore): `mpi archive verify --all` finds every object the restored index
names, and the index is consistent (every applied message's record is there, linked)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

from sqlalchemy import func, select, text

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
    restored = mpi(server, "restore", str(backups), "--yes")
    assert restored.returncode == 0, restored.stderr
    verified = mpi(server, "archive", "verify", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{manifest['instances']} checked, 0 mismatch(es)" in verified.stdout

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
