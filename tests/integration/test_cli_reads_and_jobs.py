"""The command line as an operator uses it on patient data and background jobs: every command
that shows patient data leaves an entry in the access trail; `mpi jobs` lists the jobs and
`mpi jobs run` runs one pass (SQLite; the commands are the same on PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.bootstrap import bootstrap
from adapters.container import Container
from adapters.sql.engine import default_sqlite_url
from tests.hl7_messages import registration
from tests.integration.test_cli import environment, mpi
from tests.service import make_settings


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def twins(data_dir: Path) -> Iterator[Container]:
    """Two look-alike twins registered at two sites: one open review task."""
    container = bootstrap(make_settings(default_sqlite_url(data_dir), data_dir), migrate=True)
    for message in (registration("CHRU", "880001", "ZIMMERMANN", "Claire", "19750614", "F"),
                    registration("ICL", "I880002", "ZIMMERMANN", "Hélène", "19750614", "F")):
        assert "MSA|AA|" in container.hl7.handle(message.encode("utf-8")).text
    yield container
    container.close()


def cli_reads(container: Container) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(e.action.value, e.subject, e.persons)
            for e in reversed(container.audit.search(limit=1000)) if e.channel == "cli"]


def test_every_command_showing_patient_data_leaves_a_trace(twins: Container,
                                                            data_dir: Path) -> None:
    env = environment()
    with twins.uow_factory(read_only=True) as uow:
        (task,), _ = uow.reviews.list(None, 0, 10)
        (entry, *_) = uow.journal.list(None, 10)
    persons = {task.person_id}
    with twins.uow_factory(read_only=True) as uow:
        link = uow.links.for_record(task.record_id)
        assert link is not None
        persons.add(link.person_id)

    at = ("--data-dir", str(data_dir))
    commands = [
        ("review", "list", *at), ("review", "show", str(task.id), *at),
        ("journal", *at, "show", str(entry.id)), ("audit", *at),
    ]
    for command in commands:
        done = mpi(*command, env=env)
        assert done.returncode == 0, done.stderr
    done = mpi("archive", "export", "--person", str(task.person_id), "--data-dir",
               str(data_dir), str(data_dir / "export"), env=env)
    assert done.returncode == 1 and "no stored object" in done.stderr  # traced all the same

    reads = cli_reads(twins)
    assert [(action, subject.split(" ")[0] + " " + subject.split(" ")[1])
            for action, subject, _ in reads] == [
        ("search", "review list"), ("read", "review show"), ("read", "journal show"),
        ("search", "audit --person"), ("export", "archive export"),
    ]
    assert set(reads[0][2]) == {task.person_id}
    assert set(reads[1][2]) == persons  # both sides of the task were shown
    assert set(reads[3][2]) == persons  # the trail named them: reading it is traced too
    assert reads[4][2] == ()


def test_jobs_lists_the_declared_jobs_and_runs_one_pass(twins: Container, data_dir: Path) -> None:
    env = environment()
    listing = mpi("jobs", "--data-dir", str(data_dir), env=env)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["NAME", "EVERY", "BACKLOG", "WHAT"]
    (outbox,) = [line for line in lines if line.startswith("outbox")]
    backlog = int(outbox.split()[2])
    assert backlog > 0  # the two registrations' events wait for the dispatcher

    ran = mpi("jobs", "--data-dir", str(data_dir), "run", "outbox", env=env)
    assert ran.returncode == 0, ran.stderr
    assert re.search(r"outbox: one pass done; backlog 0\b", ran.stdout)
    unknown = mpi("jobs", "--data-dir", str(data_dir), "run", "compress", env=env)
    assert unknown.returncode == 1 and "no job 'compress'" in unknown.stderr
