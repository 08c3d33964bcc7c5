"""Three `mpi serve` processes behind HAProxy (``fixtures/haproxy/haproxy.cfg``, on the
drill's ports), sharing one PostgreSQL and one archive folder; one of them SIGKILLed under
load and left dead. The feed, DICOM ingest and HTTP go on through HAProxy; every message is
applied once, the index is the one an uninterrupted run of the same messages builds, and the
background work (outbox, ITI-10 delivery) is done once per item across the survivors.

Shared by ``tests/drills/test_scale_out.py`` and ``bench/drills.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from adapters.sql.engine import create_engine_for
from adapters.sql.tables import archive_instances
from tests.drills.harness import (
    HOST,
    CountingConsumer,
    FeedSender,
    IndexState,
    JournalFacts,
    SenderFigures,
    ServeProcess,
    authorities_with_consumer,
    c_store,
    client_token,
    ct_object,
    free_port,
    get_json,
    index_state,
    journal_facts,
    realistic_feed,
    replay_in_order,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = ROOT / "fixtures" / "haproxy" / "haproxy.cfg"
SERVERS = 3


def haproxy_config(front: dict[str, int], servers: list[dict[str, int]]) -> str:
    """The documented configuration with the drill's ports in place of the example's."""
    ports = {8080: front["http"], 2575: front["mllp"], 11112: front["dicom"]}
    for number, server in enumerate(servers):
        ports[18081 + number] = server["http"]
        ports[12581 + number] = server["mllp"]
        ports[11181 + number] = server["dicom"]
    text = HAPROXY_CONFIG.read_text(encoding="utf-8")
    return re.sub(r"(127\.0\.0\.1:|check port )(\d+)",
                  lambda m: m.group(1) + str(ports.get(int(m.group(2)), int(m.group(2)))),
                  text)


class HAProxy:
    def __init__(self, workdir: Path, config: str) -> None:
        self.path = workdir / "haproxy.cfg"
        self.path.write_text(config, encoding="utf-8")
        self.log = workdir / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        return None if shutil.which("haproxy") else "haproxy is not installed"

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(["haproxy", "-db", "-f", str(self.path)],
                                            stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


@dataclass
class ScaleOutReport:
    messages: int
    sender: SenderFigures
    facts: JournalFacts
    after: IndexState
    uninterrupted: IndexState
    killed_after_acks: int
    objects: int
    instances: int
    http_after_kill: int
    a31_received: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def a31_expected(self) -> set[str]:
        return {f"NTF{n}" for n in self.facts.notification_ids}

    def lines(self, label: str) -> list[str]:
        s, f = self.sender, self.facts
        return [
            f"{label}: {SERVERS} servers behind HAProxy, one PostgreSQL; {self.messages} "
            f"messages over 4 connections, one server SIGKILLed after {self.killed_after_acks}"
            f" ACKs, {self.seconds:.1f} s",
            f"  sent {s.sent} frames ({s.resent} resent), acknowledged {s.acked}, applied "
            f"{sum(f.applied_per_message.values())} (distinct {len(f.applied_per_message)})",
            f"  index == uninterrupted run: {self.after == self.uninterrupted}; C-STORE "
            f"through HAProxy: {self.instances} of {self.objects} indexed; HTTP after the "
            f"kill: {self.http_after_kill}",
            f"  outbox pending {f.outbox_pending}; ITI-10 {f.notifications_total} "
            f"({f.notifications_pending} pending), A31 received {len(self.a31_received)} "
            f"distinct, {sum(c - 1 for c in self.a31_received.values())} retransmitted",
        ]


def run_scale_out_drill(workdir: Path, database_url: str, reference_url: str, messages: int,
                        progress: Callable[[str], None] | None = None) -> ScaleOutReport:
    say = progress or (lambda text: None)
    consumer = CountingConsumer()
    authorities = authorities_with_consumer(workdir / "authorities.toml", consumer.port,
                                            ("CHRU", "ICL", "MRUN", "CCEG", "GCS"))
    front = {"http": free_port(), "mllp": free_port(), "dicom": free_port()}
    # One public address for all (the balancer's): tokens name it as their audience.
    shared = {"MPI_PUBLIC_URL": f"http://{HOST}:{front['http']}",
              "MPI_AUTHORITIES": str(authorities), "MPI_DATA_DIR": str(workdir / "shared"),
              "MPI_ARCHIVE_DIR": str(workdir / "shared" / "archive"), "MPI_WORKERS": "0"}  # three processes already
    servers = []
    for number in range(SERVERS):
        folder = workdir / f"server{number + 1}"
        folder.mkdir()
        servers.append(ServeProcess(folder, database_url, shared))
    proxy = HAProxy(workdir, haproxy_config(front, [s.ports for s in servers]))
    feed = realistic_feed(messages)
    kill_now = threading.Event()
    try:
        servers[0].start()  # the first start makes the shared signing keys
        starting = [threading.Thread(target=s.start) for s in servers[1:]]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        proxy.start()
        http = f"http://{HOST}:{front['http']}"
        wait_until(lambda: _answers(http + "/health/ready"), 30, "HAProxy up")
        started = time.monotonic()
        token = client_token(servers[0], base=http)
        objects = 0
        for number in range(3):
            assert c_store(front["dicom"], ct_object(number)) == 0
            objects += 1

        def on_ack(acked: int) -> None:
            if acked == messages // 3:
                kill_now.set()

        sender = FeedSender(front["mllp"], feed, 4, timeout=10, on_ack=on_ack)
        figures: list[SenderFigures] = []
        feeding = threading.Thread(target=lambda: figures.append(sender.run(240)),
                                   daemon=True)
        feeding.start()
        assert kill_now.wait(240), "the feed did not get going"
        killed_after = sender.figures.acked
        servers[1].kill()
        say("server 2 SIGKILLed")
        for number in range(3, 6):  # the archive goes on through the survivors
            assert _store_until_ok(front["dicom"], ct_object(number))
            objects += 1
        http_after = get_json(http + "/fhir/Patient?family=MARTIN",
                              {"Authorization": f"Bearer {token}"})[0]
        feeding.join(300)
        assert figures, "the feed did not finish"

        def settled() -> bool:
            facts = journal_facts(database_url)
            return facts.outbox_pending == 0 and facts.notifications_pending == 0

        wait_until(settled, 120, "outbox and notifications done by the survivors")
        wait_until(lambda: len(consumer.counts()) >= journal_facts(database_url)
                   .notifications_total, 30, "every A31 received")
        seconds = time.monotonic() - started
    finally:
        proxy.stop()
        for server in servers:
            server.stop()
        consumer.stop()
    engine = create_engine_for(database_url)
    with engine.connect() as connection:
        instances = connection.execute(
            select(func.count()).select_from(archive_instances)).scalar_one()
    engine.dispose()
    facts = journal_facts(database_url)
    after = index_state(database_url).without({("CHRU", "DRILL1")})  # the scanner's patient
    say("replaying the applied messages uninterrupted")
    uninterrupted = replay_in_order(feed, facts.applied_order, reference_url,
                                    workdir / "reference")
    return ScaleOutReport(messages, figures[0], facts, after, uninterrupted, killed_after,
                          objects, int(instances), http_after,
                          dict(consumer.counts()), seconds)


def _answers(url: str) -> bool:
    try:
        return get_json(url)[0] == 200
    except OSError:
        return False


def _store_until_ok(port: int, data: bytes, attempts: int = 20) -> bool:
    """C-STORE as a modality does: an association refused or failed is tried again."""
    for _ in range(attempts):
        try:
            if c_store(port, data) == 0:
                return True
        except (OSError, RuntimeError):
            pass
        time.sleep(0.5)
    return False
