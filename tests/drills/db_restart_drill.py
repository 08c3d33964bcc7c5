"""The database restart drill: the service's PostgreSQL stopped for a while during the HL7
feed and DICOM ingest, then started again. While it is down the service answers what it
cannot apply (HL7 AE with a transient ERR, C-STORE 0xA700, HTTP 503 with Retry-After) and
says it is not ready; once it is back, it reconnects by itself and the senders' resends are
applied, each once.

Shared by ``tests/drills/test_database_restart.py`` and ``bench/drills.py``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from adapters.sql.engine import create_engine_for
from adapters.sql.migrate import upgrade
from adapters.sql.tables import archive_instances
from tests.drills.harness import (
    FeedSender,
    JournalFacts,
    PrivatePostgres,
    SenderFigures,
    ServeProcess,
    c_store,
    client_token,
    ct_object,
    get_json,
    journal_facts,
    realistic_feed,
    wait_until,
)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700


@dataclass
class OutageAnswers:
    """What the service answered while its database was down."""

    ready_status: int = 0
    ready_retry_after: str | None = None
    health_status: str = ""
    fhir_status: int = 0
    fhir_retry_after: str | None = None
    fhir_issue: str = ""  # resourceType/issue code of the FHIR answer's body
    dicomweb_status: int = 0
    dicomweb_retry_after: str | None = None
    dicomweb_type: str = ""  # Content-Type of the QIDO-RS answer
    console_status: int = 0
    console_retry_after: str | None = None
    console_type: str = ""  # Content-Type of a console page's answer
    c_store_status: int = 0


@dataclass
class RestartDrillReport:
    messages: int
    outage_seconds: float
    sender: SenderFigures
    facts: JournalFacts
    during: OutageAnswers
    recover_seconds: float  # database started -> /health/ready 200
    c_store_after: int
    instances: int
    objects_sent: int
    fhir_after: int
    errors: dict[str, int] = field(default_factory=dict)

    def lines(self, label: str) -> list[str]:
        s, d = self.sender, self.during
        return [
            f"{label}: {self.messages} messages over {len(self.lanes)} connections, "
            f"PostgreSQL stopped {self.outage_seconds:.1f} s",
            f"  sent {s.sent} frames ({s.resent} resent), acknowledged {s.acked}, applied "
            f"{sum(self.facts.applied_per_message.values())}, transient AE {s.transient_errors}",
            f"  while down: /health/ready {d.ready_status} (Retry-After {d.ready_retry_after}), "
            f"/health {d.health_status}, FHIR {d.fhir_status} (Retry-After "
            f"{d.fhir_retry_after}, {d.fhir_issue}), QIDO-RS {d.dicomweb_status} "
            f"({d.dicomweb_type}), console {d.console_status} ({d.console_type}), "
            f"C-STORE 0x{d.c_store_status:04X}",
            f"  database back -> ready in {self.recover_seconds:.1f} s; C-STORE again "
            f"0x{self.c_store_after:04X}; FHIR {self.fhir_after}; instances indexed "
            f"{self.instances} of {self.objects_sent} sent",
        ]

    lanes: list[object] = field(default_factory=list)


def run_restart_drill(workdir: Path, pg_port: int, messages: int, outage: float,
                      progress: Callable[[str], None] | None = None,
                      env: dict[str, str] | None = None) -> RestartDrillReport:
    """The drill on a cluster of its own on ``pg_port``; PostgreSQL stays down until every
    "try again" answer was seen (a transient AE among them), and ``outage`` seconds at least.
    ``env``: more settings of the server (MPI_WORKERS...)."""
    say = progress or (lambda text: None)
    # In /tmp itself: the postgres account must reach it (a test's tmp_path is under a
    # folder of mode 0700, reset so by every pytest run on the machine).
    pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="mpi-drill-pg-")), pg_port)
    pg.init()
    pg.start()
    server: ServeProcess | None = None
    try:
        url = pg.create("mpi_drill")
        engine = create_engine_for(url)
        upgrade(engine)
        engine.dispose()
        server = ServeProcess(workdir, url, env)
        server.start()
        token = client_token(server)
        bearer = {"Authorization": f"Bearer {token}"}
        fhir = server.http_base + "/fhir/Patient?family=MARTIN"
        qido = server.http_base + "/dicomweb/studies"
        assert c_store(server.ports["dicom"], ct_object(1)) == SUCCESS
        feed = realistic_feed(messages)
        stop_at = threading.Event()

        def on_ack(acked: int) -> None:
            if acked >= messages // 3:
                stop_at.set()

        sender = FeedSender(server.ports["mllp"], feed, 4, timeout=10, on_ack=on_ack)
        figures: list[SenderFigures] = []
        feeding = threading.Thread(target=lambda: figures.append(sender.run(300)), daemon=True)
        feeding.start()
        assert stop_at.wait(300), "the feed did not start"
        pg.stop()
        say("PostgreSQL stopped")
        stopped = time.monotonic()
        during = OutageAnswers()
        wait_until(lambda: not server.ready(), 30, "/health/ready turning 503")
        status, _, headers = get_json(server.http_base + "/health/ready")
        during.ready_status, during.ready_retry_after = status, headers.get("retry-after")
        during.health_status = get_json(server.http_base + "/health")[1].get("status", "")
        status, body, headers = get_json(fhir, bearer)
        during.fhir_status, during.fhir_retry_after = status, headers.get("retry-after")
        issues = body.get("issue") or [{}]
        during.fhir_issue = f"{body.get('resourceType')}/{issues[0].get('code')}"
        status, _, headers = get_json(qido, bearer)
        during.dicomweb_status, during.dicomweb_retry_after = status, headers.get("retry-after")
        during.dicomweb_type = headers.get("content-type", "")
        # any session cookie: finding its session needs the database
        status, _, headers = get_json(server.http_base + "/console/",
                                      {"Cookie": "mpi_session=unknown"})
        during.console_status, during.console_retry_after = status, headers.get("retry-after")
        during.console_type = headers.get("content-type", "")
        during.c_store_status = c_store(server.ports["dicom"], ct_object(2))
        # down until the senders were told to try again, and for ``outage`` seconds at least
        wait_until(lambda: sender.figures.transient_errors > 0, 60, "a transient AE")
        time.sleep(max(0.0, outage - (time.monotonic() - stopped)))
        down = time.monotonic() - stopped
        pg.start()
        say("PostgreSQL started again")
        started = time.monotonic()
        wait_until(server.ready, 120, "/health/ready back to 200")
        recover = time.monotonic() - started
        c_store_after = c_store(server.ports["dicom"], ct_object(2))  # sent again
        fhir_after = get_json(fhir, bearer)[0]
        feeding.join(300)
        assert figures, "the feed did not finish"
        engine = create_engine_for(url)
        with engine.connect() as connection:
            instances = connection.execute(
                select(func.count()).select_from(archive_instances)).scalar_one()
        engine.dispose()
        facts = journal_facts(url)
        report = RestartDrillReport(messages, down, figures[0], facts, during, recover,
                                    c_store_after, int(instances), 2, fhir_after,
                                    dict(figures[0].errors))
        report.lanes = list(sender.lanes)
        return report
    finally:
        if server is not None:
            server.stop()
        pg.stop("immediate")
        shutil.rmtree(pg.folder, ignore_errors=True)
