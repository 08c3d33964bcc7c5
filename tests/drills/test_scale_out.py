"""Several servers on one PostgreSQL: three `mpi serve` behind HAProxy (HTTP, MLLP and DICOM
in TCP mode, the configuration of fixtures/haproxy/haproxy.cfg), one SIGKILLed under load.
The others go on; nothing is lost, nothing applied twice, no notification doubled."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.drills.scale_out_drill import HAProxy, run_scale_out_drill

MESSAGES = 150

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_database(postgres_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from adapters.sql.engine import create_engine_for
    from adapters.sql.migrate import upgrade

    name = f"mpi_test_{os.getpid()}_scale_out"
    url: str = postgres_server.create(name)
    engine = create_engine_for(url)
    upgrade(engine)
    engine.dispose()
    yield url
    postgres_server.drop(name)


@pytest.fixture
def reference_database(postgres_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"mpi_test_{os.getpid()}_scale_out_reference"
    url: str = postgres_server.create(name)
    yield url
    postgres_server.drop(name)


def test_three_servers_behind_haproxy_share_the_work_and_survive_one_killed(
        postgres_database: str, reference_database: str, tmp_path: Path) -> None:
    reason = HAProxy.available()
    if reason is not None:
        pytest.skip(reason)
    report = run_scale_out_drill(tmp_path, postgres_database, reference_database, MESSAGES)
    print("\n".join(report.lines("scale-out drill")))

    assert report.sender.acked == MESSAGES and report.sender.rejected == []
    assert len(report.facts.applied_per_message) == MESSAGES
    assert set(report.facts.applied_per_message.values()) == {1}
    assert report.facts.not_applied == {}
    assert report.after.differences(report.uninterrupted) == []
    assert report.instances == report.objects == 6
    assert report.http_after_kill == 200
    assert report.facts.outbox_pending == 0 and report.facts.notifications_pending == 0
    assert set(report.a31_received) == report.a31_expected
