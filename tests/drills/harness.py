"""What the fault drills share: a real `mpi serve` subprocess that can be killed and started
again, a feed sender that behaves like an integration engine (one connection per hospital,
every message sent until it is acknowledged), a loopback ITI-10 consumer that counts what it
receives, and a canonical dump of the index to compare two runs.

Used by the drills of the test suite (``tests/drills/``, small sizes) and by
``bench/drills.py`` (full size).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from adapters.evaluation.population import generate_population
from adapters.evaluation.replay import a28_message
from adapters.hl7v2.er7 import parse
from adapters.hl7v2.mllp import Frame as MllpFrame
from adapters.hl7v2.mllp import FrameDecoder, MLLPServer, PeerInfo, frame
from adapters.sql.engine import create_engine_for
from adapters.sql.tables import (
    inbound_messages,
    links,
    notifications,
    outbox_events,
    review_tasks,
    source_record_versions,
    source_records,
)

HOST = "127.0.0.1"
# The transient answers a sender keeps resending (HL7 table 0357): the record was busy (206),
# the service could not apply it now (207).
TRANSIENT_ERRORS = {"206", "207"}


_RANGE = os.environ.get("MPI_DRILL_PORTS")  # e.g. 24000-24999: ports taken in this range
_next_port = iter(range(*(int(p) + i for i, p in enumerate(_RANGE.split("-"))))) if _RANGE \
    else None


def free_port() -> int:
    """A loopback port where nothing listens: the next free one of MPI_DRILL_PORTS when
    set, else one the system chooses (bound, then released)."""
    with socket.socket() as sock:
        if _next_port is None:
            sock.bind((HOST, 0))
            return int(sock.getsockname()[1])
        for port in _next_port:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port left in MPI_DRILL_PORTS={_RANGE}")


def mpi_executable() -> str:
    """The `mpi` command of this virtualenv."""
    found = Path(sys.executable).parent / "mpi"
    return str(found) if found.exists() else (shutil.which("mpi") or "mpi")


# -- the feed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedMessage:
    sender: str  # MSH-4: the establishment
    control_id: str  # MSH-10
    identifier: tuple[str, str]  # the IPP it registers (authority, value)
    payload: bytes


def realistic_feed(messages: int, seed: int = 2026) -> list[FeedMessage]:
    """``messages`` ADT^A28 of the synthetic population of ``adapters.evaluation`` (typing
    errors, twins, homonyms, qualified and unqualified identities), in a shuffled order."""
    registry = load_authorities(DEFAULT_AUTHORITIES_FILE)
    persons = max(10, messages)  # about 1.1 to 1.6 records per person: always enough rows
    rows = generate_population(persons, seed)
    random.Random(seed).shuffle(rows)
    rows = rows[:messages]
    return [FeedMessage(row.authority, f"EVAL{number:09d}", (row.authority, row.local_id),
                        a28_message(row, number, registry))
            for number, row in enumerate(rows)]


# -- mpi serve as a subprocess ----------------------------------------------------------------


class ServeProcess:
    """`mpi serve` in a subprocess on fixed ports, so that a restart answers where the
    senders already connect. ``kill()`` is SIGKILL: nothing is flushed, nothing cleaned."""

    def __init__(self, workdir: Path, database_url: str, env: dict[str, str] | None = None,
                 ports: dict[str, int] | None = None) -> None:
        self.workdir = workdir
        self.ports = ports or {"mllp": free_port(), "http": free_port(),
                               "dicom": free_port()}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MPI_")}
        self.env.update({"MPI_DATABASE_URL": database_url, "MPI_DATA_DIR": str(workdir / "data"),
                         "MPI_DISPATCH_INTERVAL": "0.05", "MPI_NOTIFY_INTERVAL": "0.05",
                         "MPI_NOTIFY_TIMEOUT": "2", "MPI_NOTIFY_MAX_BACKOFF": "0.5",
                         "MPI_ARCHIVE_FSYNC": "false"})
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.peak_rss_kb = 0  # the largest resident size seen of the server and its children

    @property
    def http_base(self) -> str:
        return f"http://{HOST}:{self.ports['http']}"

    def log_path(self) -> Path:
        return self.workdir / f"serve-{self.starts}.log"

    def start(self, timeout: float = 90) -> float:
        """Start and wait until /health/ready answers 200; the seconds it took."""
        self.starts += 1
        started = time.monotonic()
        command = [mpi_executable(), "serve", "--host", HOST,
                   "--mllp-port", str(self.ports["mllp"]),
                   "--http-port", str(self.ports["http"]),
                   "--dicom-port", str(self.ports["dicom"])]
        log = self.log_path().open("wb")
        self.process = subprocess.Popen(command, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mpi serve exited: {self.log_path().read_text()[-3000:]}")
            if self.ready():
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"mpi serve not ready: {self.log_path().read_text()[-3000:]}")
            time.sleep(0.1)

    def ready(self) -> bool:
        try:
            return get_json(self.http_base + "/health/ready")[0] == 200
        except OSError:
            return False

    def sample_memory(self) -> None:
        """Note the resident size of the server and its worker processes."""
        if self.process is None or self.process.poll() is not None:
            return
        pids = [self.process.pid, *_children(self.process.pid)]
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                continue
        self.peak_rss_kb = max(self.peak_rss_kb, total)

    def kill(self) -> None:
        """SIGKILL the server, and wait for its HL7 workers to notice and exit."""
        assert self.process is not None
        children = _children(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, and SIGKILL when it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def logs(self) -> str:
        return "\n".join((self.workdir / f"serve-{n}.log").read_text(errors="replace")
                         for n in range(1, self.starts + 1))


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found |= {int(c) for c in (task / "children").read_text().split()}
    except FileNotFoundError:
        pass
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except FileNotFoundError:
        return False
    return state != "Z"


def get_json(url: str, headers: dict[str, str] | None = None,
             timeout: float = 5) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers (lower-case names) of a GET (an HTTP error status is an answer too)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return (response.status, json.loads(response.read() or b"{}"),
                    {k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {"text": body.decode("utf-8", "replace")}
        return error.code, parsed, {k.lower(): v for k, v in error.headers.items()}


# -- the sender -------------------------------------------------------------------------------


@dataclass
class SenderFigures:
    sent: int = 0  # frames written, resends included
    acked: int = 0  # messages acknowledged AA (each once)
    resent: int = 0  # frames written again: unanswered, or answered with a transient AE
    transient_errors: int = 0  # AE answers with a transient ERR
    rejected: list[str] = field(default_factory=list)  # control IDs refused for good
    acks: dict[str, str] = field(default_factory=dict)  # control ID -> its MSA-1
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # transient ERR texts seen


class FeedSender:
    """One connection per establishment, as each HIS has its own interface; on every
    connection, one message at a time, sent until it is acknowledged: a message whose
    connection broke or timed out, or that got a transient AE, is sent again, as integration
    engines do. ``on_ack`` is called after every acknowledgement (the drills use it to pick
    their moment)."""

    def __init__(self, port: int, feed: list[FeedMessage], connections: int = 4,
                 timeout: float = 10.0, on_ack: Callable[[int], None] | None = None) -> None:
        self.port = port
        self.timeout = timeout
        self.on_ack = on_ack
        self.figures = SenderFigures()
        self._lock = threading.Lock()
        by_sender: dict[str, list[FeedMessage]] = defaultdict(list)
        for message in feed:
            by_sender[message.sender].append(message)
        lanes: list[list[FeedMessage]] = [[] for _ in range(connections)]
        for number, sender in enumerate(sorted(by_sender)):
            lanes[number % connections].extend(by_sender[sender])
        self.lanes = [lane for lane in lanes if lane]
        self.last_ack = time.monotonic()

    def run(self, give_up_after: float = 180.0) -> SenderFigures:
        """Send the whole feed; returns when every message is acknowledged or refused.
        Raises RuntimeError when nothing was acknowledged for ``give_up_after`` seconds."""
        self.give_up_after = give_up_after
        threads = [threading.Thread(target=self._lane, args=(lane,), daemon=True)
                   for lane in self.lanes]
        failures: list[BaseException] = []
        self._failures = failures
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise RuntimeError(f"a sender gave up: {failures[0]!r}")
        return self.figures

    def _lane(self, lane: list[FeedMessage]) -> None:
        connection: _Connection | None = None
        try:
            for message in lane:
                first = True
                while True:
                    if time.monotonic() - self.last_ack > self.give_up_after:
                        raise RuntimeError(f"no acknowledgement for {self.give_up_after} s")
                    try:
                        if connection is None:
                            connection = _Connection(self.port, self.timeout)
                        with self._lock:
                            self.figures.sent += 1
                            if not first:
                                self.figures.resent += 1
                        first = False
                        started = time.monotonic()
                        reply = connection.request(message.payload)
                    except OSError:
                        if connection is not None:
                            connection.close()
                        connection = None
                        time.sleep(0.2)  # the server is down or restarting: try again
                        continue
                    msa = parse(reply).first("MSA")
                    code = msa.value(1) if msa is not None else ""
                    err = parse(reply).first("ERR")
                    error = err.value(3) if err is not None else ""
                    if code in ("AA", "CA"):
                        with self._lock:
                            self.figures.acked += 1
                            self.figures.acks[message.control_id] = code
                            self.figures.latencies.append(time.monotonic() - started)
                            self.last_ack = time.monotonic()
                            acked = self.figures.acked
                        if self.on_ack is not None:
                            self.on_ack(acked)
                        break
                    if code == "AE" and error in TRANSIENT_ERRORS:
                        with self._lock:
                            self.figures.transient_errors += 1
                            self.figures.errors[err.value(8) if err else ""] += 1
                        time.sleep(0.5)
                        continue
                    with self._lock:
                        self.figures.rejected.append(message.control_id)
                        self.figures.acks[message.control_id] = code
                    break
        except BaseException as exc:
            self._failures.append(exc)
        finally:
            if connection is not None:
                connection.close()


class _Connection:
    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.decoder = FrameDecoder(1 << 20)

    def request(self, payload: bytes) -> str:
        """Raises OSError (TimeoutError included) when no reply comes."""
        self.sock.sendall(frame(payload))
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError("the server closed the connection")
            frames = self.decoder.feed(data)
            if frames:
                return frames[0].payload.decode("utf-8", "replace")

    def close(self) -> None:
        self.sock.close()


# -- the ITI-10 consumer ----------------------------------------------------------------------


class CountingConsumer:
    """A PIX consumer on loopback counting the A31s it receives by MSH-10: a notification
    sent twice arrives under the same control ID and is counted as a retransmission."""

    def __init__(self) -> None:
        import asyncio

        self.received: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = MLLPServer(self._handle, host=HOST, port=0,
                                  on_handler_error=lambda frame, exc: b"MSA|AE")
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(10)
        self.port = self._server.port

    async def _handle(self, received: MllpFrame, peer: PeerInfo) -> bytes:
        control = parse(received.payload.decode("utf-8")).msh.value(10)
        with self._lock:
            self.received[control] += 1
        return (f"MSH|^~\\&|PACS|DRILL|MPI|GCS|20261201080000||ACK^A31^ACK|R{control}|P|2.5\r"
                f"MSA|AA|{control}\r").encode()

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.received)

    def stop(self) -> None:
        import asyncio

        try:
            asyncio.run_coroutine_threadsafe(self._server.close(), self._loop).result(15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def authorities_with_consumer(path: Path, port: int, domains: Iterable[str]) -> Path:
    """The default authorities file with one ``[[consumer]]`` (name DRILL) on loopback."""
    listed = ", ".join(f'"{d}"' for d in domains)
    text = DEFAULT_AUTHORITIES_FILE.read_text(encoding="utf-8") + (
        f'\n[[consumer]]\nname = "DRILL"\nhost = "{HOST}"\nport = {port}\n'
        f'domains = [{listed}]\nreceiving_application = "PACS"\n'
        'receiving_facility = "DRILL"\n')
    path.write_text(text, encoding="utf-8")
    return path


# -- the index, canonically -------------------------------------------------------------------


@dataclass(frozen=True)
class IndexState:
    """The index in terms that do not depend on database ids: persons as the sets of source
    identifiers linked to them, each link's method and score, the review tasks."""

    persons: frozenset[frozenset[tuple[str, str]]]
    links: frozenset[tuple[tuple[str, str], str, float | None]]
    reviews: frozenset[tuple[tuple[str, str], frozenset[tuple[str, str]], str]]

    def without(self, identifiers: set[tuple[str, str]]) -> IndexState:
        """The state with these records left out (those a drill made besides the feed)."""
        return IndexState(
            frozenset(frozenset(p - identifiers) for p in self.persons if p - identifiers),
            frozenset(link for link in self.links if link[0] not in identifiers),
            frozenset((r, frozenset(p - identifiers), status)
                      for r, p, status in self.reviews if r not in identifiers))

    def differences(self, other: IndexState, limit: int = 5) -> list[str]:
        out = []
        for name in ("persons", "links", "reviews"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                out.append(f"{name}: {len(mine - theirs)} only here "
                           f"{sorted(map(str, mine - theirs))[:limit]}, {len(theirs - mine)} "
                           f"only there {sorted(map(str, theirs - mine))[:limit]}")
        return out


def index_state(database_url: str) -> IndexState:
    """The canonical dump of the index of a database."""
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            ident = {row.id: (row.authority, row.value) for row in connection.execute(
                select(source_records.c.id, source_records.c.authority,
                       source_records.c.value))}
            members: dict[int, set[tuple[str, str]]] = defaultdict(set)
            link_rows = set()
            for row in connection.execute(select(links.c.record_id, links.c.person_id,
                                                 links.c.method, links.c.score)):
                members[row.person_id].add(ident[row.record_id])
                score = None if row.score is None else round(row.score, 6)
                link_rows.add((ident[row.record_id], row.method, score))
            reviews = set()
            for row in connection.execute(select(review_tasks.c.record_id,
                                                 review_tasks.c.person_id,
                                                 review_tasks.c.status)):
                reviews.add((ident[row.record_id],
                             frozenset(members.get(row.person_id, set())), row.status))
    finally:
        engine.dispose()
    return IndexState(frozenset(frozenset(group) for group in members.values()),
                      frozenset(link_rows), frozenset(reviews))


@dataclass(frozen=True)
class JournalFacts:
    applied_order: list[str]  # control IDs of the applied messages, in the order applied
    applied_per_message: Counter[str]
    not_applied: dict[str, str]  # control ID -> status, for entries kept but not applied
    record_versions: Counter[tuple[str, str]]  # versions kept per source record
    outbox_pending: int
    notifications_total: int
    notifications_pending: int
    notification_ids: list[int]


def journal_facts(database_url: str) -> JournalFacts:
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            order, per_message, not_applied = [], Counter[str](), {}
            for row in connection.execute(
                    select(inbound_messages.c.control_id, inbound_messages.c.status)
                    .order_by(inbound_messages.c.id)):
                if row.status in ("applied", "replayed"):
                    order.append(row.control_id)
                    per_message[row.control_id] += 1
                else:
                    not_applied[row.control_id] = row.status
            versions: Counter[tuple[str, str]] = Counter()
            for row in connection.execute(
                    select(source_records.c.authority, source_records.c.value)
                    .join(source_record_versions,
                          source_record_versions.c.record_id == source_records.c.id)):
                versions[(row.authority, row.value)] += 1
            outbox_pending = len(connection.execute(
                select(outbox_events.c.id).where(outbox_events.c.processed_at.is_(None))).all())
            notes = connection.execute(select(notifications.c.id, notifications.c.status)).all()
    finally:
        engine.dispose()
    return JournalFacts(order, per_message, not_applied, versions, outbox_pending, len(notes),
                        sum(1 for n in notes if n.status != "sent"), [n.id for n in notes])


def replay_in_order(feed: list[FeedMessage], order: list[str], database_url: str,
                    data_dir: Path) -> IndexState:
    """An uninterrupted run: the messages applied in ``order`` (control IDs) one after the
    other, in process, into a fresh database; its canonical dump."""
    from adapters.bootstrap import bootstrap
    from tests.service import make_settings

    by_control = {m.control_id: m for m in feed}
    container = bootstrap(make_settings(database_url, data_dir), migrate=True)
    try:
        for control in order:
            reply = container.hl7.handle(by_control[control].payload)
            assert "MSA|AA|" in reply.text, reply.text
    finally:
        container.close()
    return index_state(database_url)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``condition`` holds; the seconds it took. Raises AssertionError."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - started


def own_peak_memory_mb() -> float:
    """This process's peak resident size (the sender's side), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- a PostgreSQL of the drill's own, that it may stop ----------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL cluster made for one drill (initdb in its folder, its own port), so that
    stopping it stops nobody else. Run as the ``postgres`` account when this process is
    root (PostgreSQL refuses to run as root)."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.data = folder / "data"

    @staticmethod
    def available() -> str | None:
        """None when a private cluster can be made here, else why not."""
        if not (PG_BIN / "initdb").exists():
            return f"no PostgreSQL server programs in {PG_BIN}"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser to become postgres"
        return None

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True,
                              timeout=120, check=check)

    def init(self) -> None:
        """Make the cluster. ``folder`` must be reachable by the postgres account all along
        (not under a folder another program may close, such as pytest's temporary root)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            os.chmod(self.folder, 0o700)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                  "postgres", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.folder / "server.log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (a no-op when it is not running). Raises RuntimeError when it
        does not stop."""
        done = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                         "-t", "60", "stop", check=False)
        if done.returncode != 0 and "is the server running" not in done.stderr:
            raise RuntimeError(f"PostgreSQL did not stop: {done.stdout} {done.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create(self, database: str) -> str:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}"')
            connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
        admin.dispose()
        return self.url(database)


# -- DICOM and HTTP as a modality and a client would ------------------------------------------


def c_store(port: int, data: bytes, calling: str = "CHRU") -> int:
    """Send one object with C-STORE (pynetdicom as the modality); its DIMSE status, or -1
    when no association could be made."""
    from io import BytesIO

    from pydicom import dcmread
    from pynetdicom import AE

    dataset = dcmread(BytesIO(data))
    ae = AE(ae_title=calling)
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    association = ae.associate(HOST, port, ae_title="VNA")
    if not association.is_established:
        return -1
    try:
        status = association.send_c_store(dataset)
        return int(status.Status) if "Status" in status else -1
    finally:
        association.release()


def ct_object(number: int, patient_id: str = "DRILL1") -> bytes:
    """A small CT object of its own UIDs, as the CHRU's scanner sends it."""
    from tests.dicom_objects import UNCOMPRESSED_CT, relabel

    root = "1.2.826.0.1.3680043.10.543.8"
    return relabel(UNCOMPRESSED_CT, patient_id=patient_id, study=f"{root}.1",
                   series=f"{root}.1.1", sop=f"{root}.1.1.{number}")


def client_token(server: ServeProcess, name: str = "drill", base: str | None = None) -> str:
    """A bearer token of a client registered as `mpi client add` registers it (CHRU, every
    scope; in this process, on the server's settings), asked of ``base`` (default: the
    server itself)."""
    from adapters.bootstrap import bootstrap
    from adapters.settings import ENV_PREFIX, Settings

    values = {key.removeprefix(ENV_PREFIX).lower(): value for key, value in server.env.items()
              if key.startswith(ENV_PREFIX)}
    settings = Settings(**{k: v for k, v in values.items() if k in Settings.model_fields})
    with bootstrap(settings) as container:
        made = container.auth.add_client(name, "system/*.cruds", "CHRU", None, None)
    client = {"client_id": made.client.client_id, "client_secret": made.secret}
    import base64
    import urllib.parse

    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode())
    request = urllib.request.Request(
        (base or server.http_base) + "/oauth/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={"Authorization": "Basic " + basic.decode()})
    with urllib.request.urlopen(request, timeout=10) as response:
        token: str = json.loads(response.read())["access_token"]
    return token
