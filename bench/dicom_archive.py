"""DICOM archive benchmarks, each beside a peer measured in the same run:

1. C-STORE ingest of N instances sent by dcmtk's `storescu` (one association) into `mpi serve`,
   against dcmtk's own `storescp` writing the same instances to disk (instances/s);
2. coerced retrieval (MB/s) through WADO-RS and C-GET (`getscu`), against reading the same
   stored files raw from disk (the physical floor);
3. making M instances of a merged patient answer under the survivor (an A40 merge, then the
   query that lists them under the survivor), against `dcmodify` rewriting those M files.

    python bench/dicom_archive.py [--instances 2000] [--merge-instances 10000]
                                  [--databases sqlite,postgresql]

Instances are 512x512 16-bit CT images (about 0.5 MB) built from pydicom's CT_small header.
PostgreSQL: a scratch database `mpi_bench_dicom` on MPI_BENCH_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

import httpx
from pydicom import dcmread
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch import database_url  # noqa: E402

from adapters.bootstrap import bootstrap  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from mpi.archive import Sender  # noqa: E402
from mpi.archive.reading import ArchiveQuery  # noqa: E402
from mpi.identity import Actor, MergeRecords, RecordData, RegisterRecord  # noqa: E402
from mpi.model import Identifier  # noqa: E402


def dcmtk(tool: str) -> str:
    venv = Path(sys.prefix).resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / tool
        if candidate.is_file() and venv not in candidate.resolve().parents:
            return str(candidate)
    raise SystemExit(f"dcmtk's {tool} is missing: apt-get install dcmtk")


# dcmtk leaves Nagle's algorithm on unless TCP_NODELAY=1: with delayed ACKs, every small DIMSE
# response then waits about 40 ms (storescp: 22 instances/s instead of 600). Our server sets
# TCP_NODELAY on its association sockets; the peers get the same here.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def generate(folder: Path, count: int, patient_id: str, study_prefix: str,
             big: bool = True) -> None:
    """`count` CT instances of one patient, 100 per study."""
    template = dcmread(get_testdata_file("CT_small.dcm"))
    if big:
        template.Rows = template.Columns = 512
        template.PixelData = os.urandom(512 * 512 * 2)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        study, number = divmod(n, 100)
        template.PatientID = patient_id
        template.StudyInstanceUID = f"{study_prefix}.{study + 1}"
        template.SeriesInstanceUID = f"{study_prefix}.{study + 1}.1"
        template.SOPInstanceUID = f"{study_prefix}.{study + 1}.1.{number + 1}"
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.InstanceNumber = number + 1
        out = BytesIO()
        template.save_as(out, enforce_file_format=True)
        (folder / f"{n:06d}.dcm").write_bytes(out.getvalue())


def storescu(port: int, folder: Path, called: str) -> float:
    start = time.perf_counter()
    subprocess.run([dcmtk("storescu"), "-aet", "CHRU", "-aec", called, "+sd", "-xe",
                    "-pdu", "131072", "127.0.0.1", str(port), str(folder)],
                   check=True, capture_output=True, env=DCMTK_ENV)
    return time.perf_counter() - start


def bench_ingest_and_retrieval(kind: str, instances: int, work: Path) -> None:
    source = work / "source"
    generate(source, instances, "100234", "1.2.250.1.999.54.77")
    size = sum(p.stat().st_size for p in source.iterdir())

    # Peer: dcmtk's storescp writing to disk.
    peer_dir, peer_port = work / "storescp", free_port()
    peer_dir.mkdir()
    peer = subprocess.Popen([dcmtk("storescp"), "-od", str(peer_dir), "-aet", "PEER",
                             "-pdu", "131072", str(peer_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=DCMTK_ENV)
    try:
        wait_port(peer_port)
        peer_seconds = storescu(peer_port, source, "PEER")
    finally:
        peer.terminate()
        peer.wait()

    url = database_url(kind, work, "mpi_bench_dicom")
    data, dicom_port, http_port = work / "data", free_port(), free_port()
    env = dict(os.environ, MPI_DATABASE_URL=url, MPI_DATA_DIR=str(data),
               MPI_DICOM_PORT=str(dicom_port), MPI_HTTP_PORT=str(http_port),
               MPI_MLLP_PORT=str(free_port()), MPI_LOG_LEVEL="WARNING", MPI_WORKERS="0")
    mpi = str(Path(sys.executable).parent / "mpi")
    if kind != "sqlite":
        subprocess.run([mpi, "db", "upgrade"], env=env, check=True, capture_output=True)
    server = subprocess.Popen([mpi, "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_port(dicom_port)
        wait_port(http_port)
        ours_seconds = storescu(dicom_port, source, "VNA")
        print(f"[{kind}] C-STORE ingest of {instances} instances ({size / 1e6:.0f} MB): "
              f"mpi serve {instances / ours_seconds:.0f}/s, dcmtk storescp "
              f"{instances / peer_seconds:.0f}/s -> {100 * peer_seconds / ours_seconds:.0f}% "
              "of the peer")

        blobs = list((data / "archive").rglob("*.dcm"))
        start = time.perf_counter()
        raw = sum(len(p.read_bytes()) for p in blobs)
        raw_seconds = time.perf_counter() - start
        studies = sorted({p.parent.parent.name for p in blobs})
        start = time.perf_counter()
        received = 0
        # The Maternité's viewer, with its token: answered in its own domain.
        added = json.loads(subprocess.run(
            [mpi, "client", "add", "bench-viewer", "--establishment", "MRUN", "--scope",
             "system/ImagingStudy.rs"], env=env, check=True, capture_output=True,
            text=True).stdout)
        token = httpx.post(f"http://127.0.0.1:{http_port}/oauth/token",
                           data={"grant_type": "client_credentials"},
                           auth=(added["client_id"], added["client_secret"])
                           ).raise_for_status().json()["access_token"]
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            for study in studies:
                with client.stream("GET", f"/dicomweb/studies/{study}") as response:
                    for chunk in response.iter_bytes():
                        received += len(chunk)
        wado_seconds = time.perf_counter() - start
        got = work / "getscu"
        got.mkdir()
        start = time.perf_counter()
        for study in studies:
            subprocess.run([dcmtk("getscu"), "-aet", "MRUN", "-aec", "VNA", "-S", "-od",
                            str(got), "-k", "QueryRetrieveLevel=STUDY", "-k",
                            f"StudyInstanceUID={study}", "127.0.0.1", str(dicom_port)],
                           check=True, capture_output=True, env=DCMTK_ENV)
        get_seconds = time.perf_counter() - start
        floor = raw / raw_seconds / 1e6
        print(f"[{kind}] coerced retrieval of {raw / 1e6:.0f} MB: WADO-RS "
              f"{received / wado_seconds / 1e6:.0f} MB/s, C-GET (getscu writing to disk) "
              f"{raw / get_seconds / 1e6:.0f} MB/s; raw read of the stored files "
              f"{floor:.0f} MB/s -> {100 * received / wado_seconds / 1e6 / floor:.0f}% and "
              f"{100 * raw / get_seconds / 1e6 / floor:.0f}% of the floor")
    finally:
        server.terminate()
        server.wait()


def bench_merge(kind: str, count: int, work: Path) -> None:
    source = work / "merge-source"
    generate(source, count, "2", "1.2.250.1.999.54.88", big=False)
    url = database_url(kind, work, "mpi_bench_dicom")
    settings = Settings(data_dir=work / "merge-data", database_url=url, archive_fsync=False)
    container = bootstrap(settings, migrate=True)
    try:
        for value, family in (("1", "DUPONT"), ("2", "DUPOND")):
            with container.uow_factory() as uow:
                container.identity.register(uow, RegisterRecord(RecordData(
                    Identifier("CHRU", value), {"birth_family_name": family})),
                    Actor("HIS", "CHRU"))
                uow.commit()
        sender = Sender("CHRU", "CHRU")
        for path in sorted(source.iterdir()):
            container.dicom.store(path.read_bytes(), sender)
        asker = container.registry.by_code("CHRU")
        start = time.perf_counter()
        with container.uow_factory() as uow:
            container.identity.merge(uow, MergeRecords(RecordData(Identifier("CHRU", "1")),
                                                       Identifier("CHRU", "2")),
                                     Actor("HIS", "CHRU"))
            uow.commit()
        committed = time.perf_counter() - start
        found = container.dicom.instances(ArchiveQuery("PATIENT", patient_id="1"), asker)
        merge_seconds = time.perf_counter() - start
        assert len(found) == count and all(plan.patient_id.value == "1" for _, plan in found)
    finally:
        container.close()
    files = sorted(str(p) for p in source.iterdir())
    start = time.perf_counter()
    for first in range(0, len(files), 500):
        subprocess.run([dcmtk("dcmodify"), "-nb", "-m", "(0010,0020)=1",
                        *files[first:first + 500]], check=True, capture_output=True)
    rewrite_seconds = time.perf_counter() - start
    print(f"[{kind}] {count} instances of a merged patient answering under the survivor: "
          f"{merge_seconds:.3f} s (merge committed in {committed:.3f} s, then every instance "
          f"listed under the survivor), dcmodify rewriting them "
          f"{rewrite_seconds:.1f} s -> {rewrite_seconds / merge_seconds:.0f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--merge-instances", type=int, default=10_000)
    parser.add_argument("--databases", default="sqlite")
    args = parser.parse_args()
    for kind in args.databases.split(","):
        with tempfile.TemporaryDirectory(prefix="mpi-bench-dicom-") as folder:
            bench_ingest_and_retrieval(kind, args.instances, Path(folder))
        with tempfile.TemporaryDirectory(prefix="mpi-bench-dicom-") as folder:
            bench_merge(kind, args.merge_instances, Path(folder))


if __name__ == "__main__":
    main()
