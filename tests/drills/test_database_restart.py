"""A database restart during the feed and DICOM ingest (a PostgreSQL cluster of the test's
own, stopped and started again): what cannot be applied is answered as such, the service says
it is not ready, reconnects by itself, and loses nothing once the senders resend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drills.db_restart_drill import OUT_OF_RESOURCES, SUCCESS, run_restart_drill
from tests.drills.harness import PrivatePostgres, free_port

MESSAGES = 200
WORKERS = {"MPI_WORKERS": "1"}  # an HL7 worker process must reconnect too: one is enough
OUTAGE_SECONDS = 0.0  # down as long as it takes to see every "try again" answer

pytestmark = pytest.mark.postgres


def test_a_database_restart_is_answered_try_again_and_loses_nothing(tmp_path: Path) -> None:
    reason = PrivatePostgres.available()
    if reason is not None:
        pytest.skip(f"cannot make a PostgreSQL cluster of the test's own: {reason}")
    report = run_restart_drill(tmp_path, free_port(), MESSAGES, OUTAGE_SECONDS, env=WORKERS)
    print("\n".join(report.lines("database restart drill")))
    during = report.during

    # while the database is down: "not now", never a 500 and never silence
    assert during.ready_status == 503 and during.ready_retry_after
    assert during.health_status == "degraded"
    # each protocol in its own format: FHIR an OperationOutcome, DICOMweb JSON, the console
    # an HTML page
    assert during.fhir_status == 503 and during.fhir_retry_after
    assert during.fhir_issue == "OperationOutcome/transient"
    assert during.dicomweb_status == 503 and during.dicomweb_retry_after
    assert during.dicomweb_type.startswith("application/json")
    assert during.console_status == 503 and during.console_retry_after
    assert during.console_type.startswith("text/html")
    assert during.c_store_status == OUT_OF_RESOURCES
    assert report.sender.transient_errors > 0  # HL7 AE with a transient ERR, sent again
    # back by itself: the same object stored, every message applied once, nothing refused
    assert report.c_store_after == SUCCESS and report.instances == report.objects_sent
    assert report.fhir_after == 200
    assert report.sender.acked == MESSAGES and report.sender.rejected == []
    assert len(report.facts.applied_per_message) == MESSAGES
    assert set(report.facts.applied_per_message.values()) == {1}
    assert report.facts.not_applied == {}


def test_a_unit_of_work_on_an_unreachable_database_says_so() -> None:
    """The translation every protocol's "try again" rests on: no server at that address is
    DatabaseUnavailableError, not a driver error (which would be a 500)."""
    from adapters.errors import DatabaseUnavailableError
    from adapters.sql.engine import create_engine_for
    from adapters.sql.uow import SqlUnitOfWorkFactory

    engine = create_engine_for(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"
                               "?connect_timeout=2")
    try:
        with pytest.raises(DatabaseUnavailableError):
            with SqlUnitOfWorkFactory(engine)() as uow:
                uow.commit()
    finally:
        engine.dispose()
