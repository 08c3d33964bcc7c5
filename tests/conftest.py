"""Fixtures shared by the whole suite: migrated databases and units of work.

PostgreSQL comes from ``MPI_TEST_POSTGRES_URL`` (default below). Each session creates its own
database ``mpi_test_<pid>`` there, migrates it once and drops it at the end; every test then
starts from empty tables. An unreachable server fails the tests that need it, unless
``MPI_TEST_SKIP_POSTGRES=1`` asks to skip them. SQLite tests copy a template migrated once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import Phase, settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from adapters.sql.engine import create_engine_for, default_sqlite_url
from adapters.sql.migrate import upgrade
from adapters.sql.tables import metadata, sync_authorities
from adapters.sql.uow import SqlUnitOfWorkFactory

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# For the mutation-testing runner (`--hypothesis-profile=mutation`, see docs/pages/matching.md):
# a counterexample kills the mutant, there is no need to shrink it.
settings.register_profile("mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          database=None)


class PostgresServer:
    """Creates and drops scratch databases next to the base database of the URL."""

    def __init__(self, base_url: str) -> None:
        self.base = make_url(base_url)
        self._admin = create_engine(self.base, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def check(self) -> None:
        """Raises OperationalError when the server cannot be reached."""
        with self._admin.connect():
            pass

    def url_of(self, database: str) -> str:
        return self.base.set(database=database).render_as_string(hide_password=False)

    def create(self, database: str) -> str:
        self.drop(database)
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
        return self.url_of(database)

    def drop(self, database: str) -> None:
        with self._admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}"')

    def close(self) -> None:
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    base_url = os.environ.get("MPI_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    server = PostgresServer(base_url)
    try:
        server.check()
    except OperationalError as exc:
        server.close()
        where = make_url(base_url).render_as_string(hide_password=True)
        if os.environ.get("MPI_TEST_SKIP_POSTGRES") == "1":
            pytest.skip(f"PostgreSQL unreachable at {where} (MPI_TEST_SKIP_POSTGRES=1)")
        pytest.fail(f"PostgreSQL unreachable at {where}: {exc.orig}", pytrace=False)
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A migrated database of this session."""
    name = f"mpi_test_{os.getpid()}"
    url = postgres_server.create(name)
    engine = create_engine_for(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    yield url
    postgres_server.drop(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied by every test that needs an empty database."""
    folder = tmp_path_factory.mktemp("sqlite-template")
    engine = create_engine_for(default_sqlite_url(folder))
    try:
        upgrade(engine)
    finally:
        engine.dispose()  # closing the last connection folds the WAL into the file
    return folder / "mpi.sqlite3"


def _truncate_all(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            quoted = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
            connection.exec_driver_sql(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
    finally:
        engine.dispose()


DATABASE_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def fresh_database(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    """The URL of a freshly migrated, empty database of one kind (``sqlite`` in ``tmp_path``,
    or ``postgresql``: this session's database, emptied). For fixtures that choose the kind
    themselves, such as the contract suite's, which adds the in-memory fakes."""
    if kind == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "mpi.sqlite3")
        return default_sqlite_url(tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    _truncate_all(url)
    return url


def sql_uow_factory(engine: Engine) -> SqlUnitOfWorkFactory:
    """Units of work on a database holding the authorities of the default authorities file."""
    with engine.begin() as connection:
        sync_authorities(connection, load_authorities(DEFAULT_AUTHORITIES_FILE).all)
    return SqlUnitOfWorkFactory(engine)


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated, empty database of each kind."""
    return fresh_database(request, request.param, tmp_path)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine_for(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def uow_factory(engine: Engine) -> SqlUnitOfWorkFactory:
    """Units of work on a database holding the authorities of the default authorities file."""
    return sql_uow_factory(engine)


@pytest.fixture(params=DATABASE_KINDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each kind that was never migrated."""
    if request.param == "sqlite":
        yield default_sqlite_url(tmp_path / "fresh")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"mpi_test_{os.getpid()}_empty"
    yield server.create(name)
    server.drop(name)


class S3Server:
    """moto's standalone S3 server on loopback, started once per session (a real HTTP peer
    speaking the S3 protocol)."""

    def __init__(self) -> None:
        import socket
        import subprocess
        import sys
        import time
        import urllib.request

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.process.kill()
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.2)
        self._buckets = 0

    ENVIRONMENT = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "eu-west-3"}

    def client(self) -> object:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="eu-west-3",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self) -> str:
        """An empty bucket of its own for a test."""
        self._buckets += 1
        name = f"archive-{os.getpid()}-{self._buckets}"
        self.client().create_bucket(  # type: ignore[attr-defined]
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        return name

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()
