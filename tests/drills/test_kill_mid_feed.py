"""kill -9 mid-feed (SQLite and PostgreSQL): `mpi serve` killed during a realistic feed over
four connections and started again; the senders resend what was not acknowledged. Every
acknowledged message is applied exactly once, the index is the one an uninterrupted run of the
same messages builds, and every ITI-10 notification reaches its consumer once (a resend after
the kill carries the same MSH-10)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.sql.engine import default_sqlite_url
from tests.drills.kill_drill import run_kill_drill

MESSAGES = 400
# On PostgreSQL the HL7 messages go to worker processes (one per core by default): one is
# enough for a killed server's worker to have to die with it and be replaced after the restart.
WORKERS = {"MPI_WORKERS": "1"}


@pytest.fixture
def reference_url(database_url: str, request: pytest.FixtureRequest,
                  tmp_path: Path) -> Iterator[str]:
    """An empty database of the same kind as ``database_url``, for the uninterrupted run."""
    if database_url.startswith("sqlite"):
        yield default_sqlite_url(tmp_path / "reference-db")
        return
    server = request.getfixturevalue("postgres_server")
    name = f"mpi_test_{os.getpid()}_drill_reference"
    yield server.create(name)
    server.drop(name)


def test_a_killed_server_loses_nothing_and_applies_nothing_twice(
        database_url: str, reference_url: str, tmp_path: Path) -> None:
    on_postgres = database_url.startswith("postgresql")
    report = run_kill_drill(tmp_path, database_url, reference_url, MESSAGES, kills=1,
                            env=WORKERS if on_postgres else None)
    print("\n".join(report.lines("kill -9 drill")))
    feed_ids = {f"EVAL{n:09d}" for n in range(MESSAGES)}

    assert report.kills == 1 and report.sender.acked == MESSAGES
    assert report.sender.rejected == []
    # every message applied, each once: no lost message, no retransmission applied again
    assert set(report.facts.applied_per_message) == feed_ids
    assert set(report.facts.applied_per_message.values()) == {1}
    assert report.facts.not_applied == {}
    assert set(report.facts.record_versions.values()) == {1}
    assert report.after.differences(report.uninterrupted) == []
    # the events and the notifications they caused: all handed over, none doubled
    assert report.facts.outbox_pending == 0 and report.facts.notifications_pending == 0
    assert report.facts.notifications_total > 0
    assert set(report.a31_received) == report.a31_expected
