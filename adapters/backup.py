"""`mpi backup DIR` and `mpi restore DIR`: the index and the stored objects, consistent.

A backup is a folder:

- ``index.sqlite3`` (SQLite: the sqlite3 online backup API, a consistent copy taken while the
  service runs) or ``index.pgdump`` (PostgreSQL: ``pg_dump --format=custom``, one snapshot);
- ``archive/``: the stored objects, copied after the index snapshot. Objects are written
  before the index row naming them commits and are never rewritten in place, so every object
  the snapshot names is there when the copy runs (objects stored meanwhile are copied too:
  harmless, ``mpi archive verify`` ignores files no row names);
- ``manifest.json``: when, from which database kind, the schema revision, the counts.

The service's keys (``<data dir>/keys``) are not in a backup: a restored service signs with
new keys (tokens issued before it must be asked again), and no secret sits in a backup folder.
On S3 the objects stay where they are (the bucket's own versioning and replication keep
them); a backup then holds the index only.

Restore into a stopped service: the SQLite file is replaced; a PostgreSQL database is emptied
and loaded with ``pg_restore`` (the same major version as the dump's ``pg_dump``); the objects
are copied back. Then ``mpi archive verify --all`` re-reads every object against its SHA-256.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from adapters.errors import AdapterError
from adapters.settings import Settings
from adapters.sql.engine import create_engine_for
from adapters.sql.migrate import current_revision
from adapters.sql.tables import archive_instances

__all__ = ["BackupError", "BackupReport", "backup", "restore", "MANIFEST"]

MANIFEST = "manifest.json"
SQLITE_FILE = "index.sqlite3"
PG_DUMP_FILE = "index.pgdump"
ARCHIVE_FOLDER = "archive"
_PG_BIN = Path("/usr/lib/postgresql")


class BackupError(AdapterError):
    """A backup cannot be made or restored (folder not empty, tools missing, a failed dump)."""


@dataclass(frozen=True)
class BackupReport:
    folder: Path
    database: str  # sqlite or postgresql
    instances: int  # instances the index names
    files: int  # object files copied
    bytes: int


def backup(settings: Settings, folder: Path) -> BackupReport:
    """Back up the index and the stored objects into ``folder`` (new or empty), the service
    running or not. Raises BackupError."""
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()):
        raise BackupError(f"{folder} is not empty: back up into a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    kind = make_url(url).get_backend_name()
    if kind == "sqlite":
        _sqlite_backup(settings, folder / SQLITE_FILE)
    else:
        _run_tool("pg_dump", "--format=custom", "--no-owner", "--file",
                  str(folder / PG_DUMP_FILE), _libpq_url(url))
    instances, revision = _index_facts(url)
    files, size = (0, 0) if settings.archive_url else _copy_objects(
        settings.resolved_archive_dir(), folder / ARCHIVE_FOLDER)
    manifest = {"created_at": datetime.now(UTC).isoformat(), "database": kind,
                "schema_revision": revision, "instances": instances, "object_files": files,
                "object_bytes": size, "objects": "s3 (not copied)" if settings.archive_url
                else ARCHIVE_FOLDER}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return BackupReport(folder, kind, instances, files, size)


def restore(settings: Settings, folder: Path) -> BackupReport:
    """Restore a backup made by :func:`backup` into the database and archive folder of
    ``settings``; the service must be stopped. Raises BackupError."""
    folder = folder.resolve()
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder} holds no backup manifest: {exc}") from None
    url = settings.resolved_database_url()
    kind = make_url(url).get_backend_name()
    if kind != manifest["database"]:
        raise BackupError(f"the backup holds a {manifest['database']} index; the settings "
                          f"name a {kind} database")
    if kind == "sqlite":
        target = make_url(url).database
        assert target is not None
        _sqlite_restore(folder / SQLITE_FILE, Path(target))
    else:
        engine = create_engine_for(url)
        try:
            with engine.begin() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
        finally:
            engine.dispose()
        _run_tool("pg_restore", "--no-owner", "--exit-on-error", "--dbname",
                  _libpq_url(url), str(folder / PG_DUMP_FILE))
    files, size = 0, 0
    if (folder / ARCHIVE_FOLDER).is_dir() and not settings.archive_url:
        files, size = _copy_objects(folder / ARCHIVE_FOLDER, settings.resolved_archive_dir())
    instances, _ = _index_facts(url)
    return BackupReport(folder, kind, instances, files, size)


def _sqlite_backup(settings: Settings, target: Path) -> None:
    source_file = settings.sqlite_file()
    if source_file is None or not source_file.exists():
        raise BackupError(f"no SQLite index at {source_file}")
    source = sqlite3.connect(f"file:{source_file}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        # In one step: one read snapshot (WAL: writers go on meanwhile); copied in steps, a
        # backup would start again after every write of the running service.
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def _sqlite_restore(source: Path, target: Path) -> None:
    if not source.exists():
        raise BackupError(f"no {SQLITE_FILE} in the backup")
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        leftover.unlink(missing_ok=True)
    origin = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    restored = sqlite3.connect(target)
    try:
        origin.backup(restored)
    finally:
        restored.close()
        origin.close()


def _copy_objects(source: Path, target: Path) -> tuple[int, int]:
    """Copy every object file (never a temporary one) from one folder tree to another,
    keeping those already there with the same size; (files, bytes) copied or kept."""
    files, size = 0, 0
    if not source.is_dir():
        return files, size
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.name.startswith(".incoming-"):
            continue
        destination = target / path.relative_to(source)
        length = path.stat().st_size
        if not (destination.exists() and destination.stat().st_size == length):
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(f".incoming-{destination.name}")
            shutil.copyfile(path, partial)
            os.replace(partial, destination)
        files += 1
        size += length
    return files, size


def _index_facts(url: str) -> tuple[int, str | None]:
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            instances = connection.execute(
                select(func.count()).select_from(archive_instances)).scalar_one()
        revision = current_revision(engine)
    finally:
        engine.dispose()
    return int(instances), revision


def _libpq_url(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it (no ``+psycopg`` driver part)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _run_tool(name: str, *arguments: str) -> None:
    """Run pg_dump or pg_restore: the newest of the server packages installed, else PATH."""
    candidates = sorted(_PG_BIN.glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3])
                        if p.parts[-3].isdigit() else 0)
    program = str(candidates[-1]) if candidates else shutil.which(name)
    if program is None:
        raise BackupError(f"{name} is not installed (the PostgreSQL client programs of the "
                          "server's major version)")
    done = subprocess.run([program, *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{name} failed: {done.stderr.strip()[-2000:]}")
