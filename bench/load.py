"""Load and backpressure: 50 MLLP connections, 50 DICOM associations and a FHIR flood at once,
against the service's limits, each beside its peer, the same load with the limits lifted.

Prints, per run: what was sent, answered and refused, the throughput and latency percentiles,
and the peak resident memory of the process (the service runs in it; sampled every 20 ms,
from the run's start). SQLite by default, ``--database-url`` for PostgreSQL.

    python bench/load.py
    python bench/load.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import httpx
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.dicom_objects import relabel
from tests.feeds import Peer, segments
from tests.hl7_messages import registration
from tests.service import RunningService, start_service

AT_ONCE = 50
EXTRA = 10  # connections or associations beyond the limit


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def peak_memory() -> Iterator[Callable[[], float]]:
    """The highest resident memory seen while the block runs."""
    peak = [rss_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak[0]
    finally:
        done.set()
        sampler.join()


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    cuts = statistics.quantiles(values, n=100)
    return f"p50 {cuts[49] * 1000:.0f} ms, p95 {cuts[94] * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def mllp_load(service: RunningService, messages: int, tag: str) -> str:
    """AT_ONCE connections each sending ``messages`` registrations, and EXTRA more connections
    opened while they are all open."""
    latencies: list[float] = []
    outcomes: list[str] = []
    peers = [Peer(service.mllp_port) for _ in range(AT_ONCE)]
    extra_closed = extra_open = 0
    for _ in range(EXTRA):
        sock = socket.create_connection(("127.0.0.1", service.mllp_port), timeout=5)
        sock.settimeout(1)
        try:
            closed = sock.recv(16) == b""
        except TimeoutError:
            closed = False
        extra_closed += closed
        extra_open += not closed
        sock.close()
    lock = threading.Lock()

    def feed(index: int) -> None:
        for n in range(messages):
            started = time.perf_counter()
            reply = peers[index].send(registration("CHRU", f"{tag}{index:03d}{n:04d}", "CHARGE"))
            with lock:
                latencies.append(time.perf_counter() - started)
                outcomes.append(segments(reply)["MSA"][0][1])

    started = time.perf_counter()
    threads = [threading.Thread(target=feed, args=(i,)) for i in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for peer in peers:
        peer.close()
    return (f"{len(outcomes)} of {AT_ONCE * messages} answered ({outcomes.count('AA')} AA), "
            f"{len(outcomes) / seconds:.0f} msg/s, {percentiles(latencies)}; "
            f"{EXTRA} more connections: {extra_closed} closed at once, {extra_open} served")


def dicom_load(service: RunningService, objects: int, tag: str) -> str:
    """AT_ONCE associations each storing ``objects`` CT images, EXTRA more while they are
    open."""
    scu = AE(ae_title="CHRU")
    scu.add_requested_context(CTImageStorage)
    scu.add_requested_context(Verification)
    associations = [scu.associate("127.0.0.1", service.dicom_port, ae_title="VNA")
                    for _ in range(AT_ONCE)]
    established = sum(a.is_established for a in associations)
    extra = [scu.associate("127.0.0.1", service.dicom_port, ae_title="VNA")
             for _ in range(EXTRA)]
    rejected = sum(a.is_rejected for a in extra)
    for association in extra:
        if association.is_established:
            association.release()
    statuses: list[int] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def store(index: int) -> None:
        association = associations[index]
        if not association.is_established:
            return
        for n in range(objects):
            uid = f"1.2.826.0.1.3680043.10.{abs(hash(tag)) % 10_000}.{index}.{n}"
            data = dcmread(BytesIO(relabel("CT_small.dcm", patient_id=f"{tag}{index}",
                                           study=uid + ".1", series=uid + ".2", sop=uid + ".3")))
            started = time.perf_counter()
            status = association.send_c_store(data)
            with lock:
                latencies.append(time.perf_counter() - started)
                statuses.append(int(status.Status) if "Status" in status else -1)
        association.release()

    started = time.perf_counter()
    threads = [threading.Thread(target=store, args=(i,)) for i in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return (f"{established} associations established, {len(statuses)} C-STORE answered "
            f"({statuses.count(0)} success), {len(statuses) / seconds:.0f} objects/s, "
            f"{percentiles(latencies)}; {EXTRA} more associations: {rejected} rejected")


def fhir_flood(service: RunningService, requests: int) -> str:
    """``requests`` PDQm searches sent at once."""
    headers = service.bearer("system/Patient.rs", "CHRU")
    url = service.http_base + "/fhir/Patient?family=charge&_count=10"
    latencies: list[float] = []

    async def one(client: httpx.AsyncClient) -> int:
        started = time.perf_counter()
        answer = await client.get(url, headers=headers)
        latencies.append(time.perf_counter() - started)
        return answer.status_code

    async def flood() -> list[int]:
        limits = httpx.Limits(max_connections=requests)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            return list(await asyncio.gather(*(one(client) for _ in range(requests)),
                                             return_exceptions=False))

    started = time.perf_counter()
    statuses = asyncio.run(flood())
    seconds = time.perf_counter() - started
    counts = {status: statuses.count(status) for status in sorted(set(statuses))}
    return (f"{len(statuses)} of {requests} answered {counts}, {len(statuses) / seconds:.0f} "
            f"answers/s, {percentiles(latencies)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--messages", type=int, default=20, help="per MLLP connection")
    parser.add_argument("--objects", type=int, default=4, help="per DICOM association")
    parser.add_argument("--requests", type=int, default=500, help="FHIR requests at once")
    arguments = parser.parse_args()
    runs = [("limits", dict(mllp_max_connections=AT_ONCE, dicom_max_associations=AT_ONCE,
                            http_max_concurrency=16)),
            ("no limits (peer)", dict(mllp_max_connections=100_000,
                                      dicom_max_associations=1_000,
                                      http_max_concurrency=100_000))]
    for number, (name, limits) in enumerate(runs):
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            url = arguments.database_url or f"sqlite:///{work / 'load.sqlite3'}"
            service = start_service(url, work / "data", **limits)
            try:
                print(f"== {name}: {limits} on {url.split(':')[0]}", flush=True)
                measure_all(service, arguments, number)
            finally:
                service.stop()


def measure_all(service: RunningService, arguments: argparse.Namespace, number: int) -> None:
    loads: list[tuple[str, Callable[[], str]]] = [
        ("MLLP", lambda: mllp_load(service, arguments.messages, f"L{number}")),
        ("DICOM", lambda: dicom_load(service, arguments.objects, f"D{number}")),
        ("FHIR", lambda: fhir_flood(service, arguments.requests))]
    for label, run in loads:
        with peak_memory() as peak:
            result = run()
        print(f"{label:<6} {result}; peak memory {peak():.0f} MB", flush=True)

if __name__ == "__main__":
    main()
