"""The archive beside Orthanc, on the same objects, in the same run, interleaved.

Each line prints ours, Orthanc's and the ratio (ours / Orthanc's for throughput, Orthanc's /
ours for latency: above 1.0 we are ahead), as the median over the rounds with the range:

- C-STORE ingest with dcmtk's storescu, one association and four in parallel (objects/s);
- C-GET of every study into dcmtk's getscu (MB/s);
- WADO-RS of every study (multipart) and of instances one by one (MB/s), ours coercing every
  header for the asker's domain;
- QIDO-RS study search on an archive of --qido-studies studies (p50 and p95 latency);
- ``mpi archive import`` of a folder, files copied into the archive and indexed in place
  (``--in-place``: no copy), beside Orthanc importing the same folder through its REST API, one
  file after another as its ImportDicomFiles.py does (it has no import in place: its figure
  stands beside both of ours) (files/s and MB/s);
- a multi-frame object of --big-mb MB through C-STORE, STOW-RS and WADO-RS, with the peak
  resident memory of the server process above its idle size (ours and Orthanc's).

    python bench/peers.py [--instances 600] [--rounds 3] [--qido-studies 10000]
                          [--big-mb 1024] [--skip retrieval,import,qido,big]

Orthanc (``apt-get install orthanc orthanc-dicomweb``) runs from a configuration written in
the work folder: SQLite index, SyncStorageArea on, the DICOMweb plugin, C-GET allowed to any
caller, TCP_NODELAY on its DICOM and HTTP sockets. Without Orthanc, every line says so and
prints ours alone. Ports come from --port-base (four consecutive ports per server).
Objects: 512x512 16-bit CT images (about 0.5 MB) from pydicom's CT_small header, 100 per study.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from dicom_archive import DCMTK_ENV, dcmtk, generate, wait_port  # noqa: E402

ORTHANC = shutil.which("Orthanc")
ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
NO_PEER = "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb): ours alone"


# -- the two servers ------------------------------------------------------------------------

class Server:
    name = ""
    aet = ""
    wado_root = ""

    def __init__(self, work: Path, ports: range) -> None:
        self.work = work
        self.dicom_port, self.http_port = ports[0], ports[1]
        self.process: subprocess.Popen[bytes] | None = None
        self.headers: dict[str, str] = {}

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=600,
                            headers=self.headers)


class Ours(Server):
    name = "ours"
    aet = "VNA"
    wado_root = "/dicomweb"
    credentials: tuple[str, str] | None = None

    def env(self) -> dict[str, str]:
        return dict(os.environ, MPI_DATA_DIR=str(self.work / "data"),
                    MPI_DICOM_PORT=str(self.dicom_port), MPI_HTTP_PORT=str(self.http_port),
                    MPI_MLLP_PORT=str(self.http_port + 1), MPI_LOG_LEVEL="WARNING",
                    MPI_WORKERS="0")

    def mpi(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).parent / "mpi"), *arguments],
                              env=self.env(), check=True, capture_output=True, text=True)

    def start(self) -> None:
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "mpi"), "serve"],
                                        env=self.env(), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_port(self.dicom_port, 60)
        wait_port(self.http_port, 60)
        if self.credentials is None:
            # The CHRU's viewer: every answer coerced to its domain (the objects arrive
            # without IssuerOfPatientID and leave with the CHRU's qualifiers).
            added = json.loads(self.mpi("client", "add", f"bench-{self.http_port}",
                                        "--establishment", "CHRU", "--scope",
                                        "system/ImagingStudy.crs").stdout)
            self.credentials = (added["client_id"], added["client_secret"])

    def client(self) -> httpx.Client:
        # A token lives five minutes: a fresh one for each series of requests.
        assert self.credentials is not None
        token = httpx.post(f"http://127.0.0.1:{self.http_port}/oauth/token",
                           data={"grant_type": "client_credentials"},
                           auth=self.credentials).raise_for_status().json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        return super().client()


class Orthanc(Server):
    name = "Orthanc"
    aet = "ORTHANC"
    wado_root = "/dicom-web"

    def start(self) -> None:
        storage = self.work / "orthanc"
        storage.mkdir(exist_ok=True)
        config = {
            "Name": "bench", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": self.aet,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "SyncStorageArea": True, "TcpNoDelay": True, "KeepAlive": True,
            "DicomAlwaysAllowGet": True, "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False, "HttpCompressionEnabled": False,
            "Plugins": [str(ORTHANC_PLUGIN)], "DicomWeb": {"Enable": True,
                                                           "Root": "/dicom-web/"},
            "StorageAccessOnFind": "Never", "SaveJobs": False,
        }
        path = self.work / "orthanc.json"
        path.write_text(json.dumps(config))
        self.process = subprocess.Popen([str(ORTHANC), str(path)], env=DCMTK_ENV,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.dicom_port, 60)
        wait_port(self.http_port, 60)


# -- measures -------------------------------------------------------------------------------

def storescu(server: Server, folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([dcmtk("storescu"), "-aet", "CHRU", "-aec", server.aet, "+sd",
                             "-xe", "-pdu", "131072", "127.0.0.1", str(server.dicom_port),
                             str(folder)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=DCMTK_ENV)


def ingest(server: Server, folders: list[Path]) -> float:
    """Objects per second, one association per folder, all at once."""
    count = sum(len(list(folder.iterdir())) for folder in folders)
    start = time.perf_counter()
    senders = [storescu(server, folder) for folder in folders]
    for sender in senders:
        _, errors = sender.communicate()
        if sender.returncode:
            raise RuntimeError(f"storescu into {server.name}: {errors.decode()[-500:]}")
    return count / (time.perf_counter() - start)


def cget(server: Server, studies: list[str], into: Path) -> float:
    """MB/s of every study fetched by getscu, written to disk."""
    into.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for study in studies:
        subprocess.run([dcmtk("getscu"), "-aet", "MRUN", "-aec", server.aet, "-S", "-od",
                        str(into), "-k", "QueryRetrieveLevel=STUDY", "-k",
                        f"StudyInstanceUID={study}", "127.0.0.1", str(server.dicom_port)],
                       check=True, capture_output=True, env=DCMTK_ENV)
    seconds = time.perf_counter() - start
    got = sum(path.stat().st_size for path in into.iterdir())
    shutil.rmtree(into)
    return got / seconds / 1e6


def wado_studies(server: Server, studies: list[str]) -> float:
    received = 0
    with server.client() as client:
        start = time.perf_counter()
        for study in studies:
            with client.stream("GET", f"{server.wado_root}/studies/{study}",
                               headers={"Accept": 'multipart/related; type="application/dicom"'}
                               ) as response:
                response.raise_for_status()
                for chunk in response.iter_raw(1 << 20):
                    received += len(chunk)
        return received / (time.perf_counter() - start) / 1e6


def wado_instances(server: Server, instances: list[tuple[str, str, str]]) -> float:
    received = 0
    with server.client() as client:
        start = time.perf_counter()
        for study, series, sop in instances:
            with client.stream(
                    "GET", f"{server.wado_root}/studies/{study}/series/{series}/instances/{sop}",
                    headers={"Accept": 'multipart/related; type="application/dicom"'}
                    ) as response:
                response.raise_for_status()
                for chunk in response.iter_raw(1 << 20):
                    received += len(chunk)
        return received / (time.perf_counter() - start) / 1e6


def qido(server: Server, patients: list[str]) -> tuple[float, float]:
    """p50 and p95 (ms) of study searches by patient."""
    latencies = []
    with server.client() as client:
        for patient in patients:
            start = time.perf_counter()
            response = client.get(f"{server.wado_root}/studies", params={
                "PatientID": patient, "IssuerOfPatientID": "CHRU"} if server.name == "ours"
                else {"PatientID": patient}, headers={"Accept": "application/dicom+json"})
            response.raise_for_status()
            if not response.json():
                raise RuntimeError(f"{server.name} found no study of {patient}")
            latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    return (statistics.median(latencies), latencies[int(len(latencies) * 0.95) - 1])


def import_into(server: Server, folder: Path, in_place: bool = False) -> float:
    """Seconds to import every file of a folder (ours: indexed where they lie when
    ``in_place``)."""
    files = sorted(folder.iterdir())
    if isinstance(server, Ours):
        server.mpi("db", "upgrade")  # the index the import fills, made beforehand
    start = time.perf_counter()
    if isinstance(server, Ours):
        server.mpi("archive", "import", "--authority", "CHRU",
                   *(["--in-place"] if in_place else []), str(folder))
        return time.perf_counter() - start
    with server.client() as client:
        for path in files:
            client.post("/instances", content=path.read_bytes()).raise_for_status()
    return time.perf_counter() - start


class PeakMemory:
    """Peak resident memory of a process (and its children) above its size when the watch
    began, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.idle = self.rss()
        self.peak = self.idle
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def rss(self) -> int:
        total = 0
        pids = [self.pid]
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            pids += [int(child) for child in children]
        except OSError:
            pass
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def watch(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def above_idle_mb(self) -> float:
        return (self.peak - self.idle) / 1e6


# -- objects --------------------------------------------------------------------------------

def split(folder: Path, parts: int) -> list[Path]:
    """The files of a folder moved into ``parts`` sub-folders, for one association each."""
    files = sorted(folder.iterdir())
    folders = [folder / f"part{n}" for n in range(parts)]
    for sub in folders:
        sub.mkdir()
    for index, path in enumerate(files):
        path.rename(folders[index % parts] / path.name)
    return folders


def small_studies(folder: Path, count: int) -> list[str]:
    """``count`` studies of one small CT each, of count // 5 patients; their patient ids."""
    template = dcmread(get_testdata_file("CT_small.dcm"))
    del template.PixelData
    folder.mkdir(parents=True)
    patients = []
    for n in range(count):
        patient = f"Q{n // 5:06d}"
        template.PatientID = patient
        template.StudyInstanceUID = f"1.2.250.1.999.54.66.{n + 1}"
        template.SeriesInstanceUID = f"1.2.250.1.999.54.66.{n + 1}.1"
        template.SOPInstanceUID = f"1.2.250.1.999.54.66.{n + 1}.1.1"
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        out = BytesIO()
        template.save_as(out, enforce_file_format=True)
        (folder / f"{n:06d}.dcm").write_bytes(out.getvalue())
        patients.append(patient)
    return sorted(set(patients))


def big_object(path: Path, megabytes: int) -> None:
    """A multi-frame CT of about ``megabytes`` MB (512x512 16-bit frames), written as a
    stream: header by pydicom, then the pixel data element and its frames."""
    template = dcmread(get_testdata_file("CT_small.dcm"))
    frames = max(1, megabytes * 1_000_000 // (512 * 512 * 2))
    template.Rows = template.Columns = 512
    template.NumberOfFrames = frames
    template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = (
        "1.2.250.1.999.54.55.1.1.1")
    template.StudyInstanceUID = "1.2.250.1.999.54.55.1"
    template.SeriesInstanceUID = "1.2.250.1.999.54.55.1.1"
    del template.PixelData
    meta = FileMetaDataset(template.file_meta)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    template.file_meta = meta
    out = BytesIO()
    template.save_as(out, enforce_file_format=True)
    length = frames * 512 * 512 * 2
    frame = os.urandom(512 * 512 * 2)
    with path.open("wb") as handle:
        handle.write(out.getvalue())
        handle.write(b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little"))
        for _ in range(frames):
            handle.write(frame)


def stow(server: Server, path: Path) -> None:
    boundary = "benchboundary"

    def body() -> Iterator[bytes]:
        yield (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    with server.client() as client:
        client.post(f"{server.wado_root}/studies", content=body(), headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json"}).raise_for_status()


# -- the run --------------------------------------------------------------------------------

class Figures:
    """Every figure of every round, printed as medians with their ranges."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], list[float]] = {}
        self.order: list[tuple[str, str]] = []

    def add(self, line: str, who: str, value: float) -> None:
        key = (line, who)
        if key not in self.values:
            self.values[key] = []
            if (line, "") not in self.order:
                self.order.append((line, ""))
        self.values[key].append(value)

    def text(self, line: str, who: str) -> str:
        values = self.values.get((line, who))
        if not values:
            return "-"
        median = statistics.median(values)
        if len(values) == 1:
            return f"{median:,.1f}"
        return f"{median:,.1f} ({min(values):,.1f}-{max(values):,.1f})"

    def report(self, lower_is_better: set[str]) -> None:
        if not self.order:
            return
        width = max(len(line) for line, _ in self.order)
        print(f"\n{'':{width}}  {'ours':>26}  {'Orthanc':>26}  ratio")
        for line, _ in self.order:
            ours = self.values.get((line, "ours"))
            peer = self.values.get((line, "Orthanc"))
            ratio = "-"
            if ours and peer:
                a, b = statistics.median(ours), statistics.median(peer)
                num, den = (b, a) if line in lower_is_better else (a, b)
                ratio = f"{num / den:.2f}" if den else "ours 0"
            print(f"{line:{width}}  {self.text(line, 'ours'):>26}  "
                  f"{self.text(line, 'Orthanc'):>26}  {ratio}", flush=True)


def retrieval_round(server: Server, work: Path, sets: dict[str, Path],
                    studies: list[str], instances: list[tuple[str, str, str]],
                    figures: Figures) -> None:
    server.start()
    try:
        figures.add("C-STORE ingest, 1 association (objects/s)", server.name,
                    ingest(server, [sets["one"]]))
        figures.add("C-STORE ingest, 4 associations (objects/s)", server.name,
                    ingest(server, sorted(sets["four"].iterdir())))
        figures.add("C-GET of each study into getscu (MB/s)", server.name,
                    cget(server, studies, work / "getscu"))
        figures.add("WADO-RS of each study (MB/s)", server.name,
                    wado_studies(server, studies))
        figures.add("WADO-RS of instances one by one (MB/s)", server.name,
                    wado_instances(server, instances))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--qido-studies", type=int, default=10_000)
    parser.add_argument("--qido-queries", type=int, default=300)
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--port-base", type=int, default=22100)
    parser.add_argument("--skip", default="",
                        help="comma-separated: retrieval,import,qido,big")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    peer = ORTHANC is not None and ORTHANC_PLUGIN.is_file()
    if not peer:
        print(NO_PEER)
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="mpi-bench-peers-") as folder:
        work = Path(folder)
        print(f"objects: {args.instances} CT of 0.5 MB; {args.rounds} rounds, ours and "
              f"Orthanc interleaved", flush=True)
        sets = {"one": work / "set-one", "four": work / "set-four"}
        generate(sets["one"], args.instances, "100234", "1.2.250.1.999.54.77")
        generate(sets["four"], args.instances, "100235", "1.2.250.1.999.54.78")
        split(sets["four"], 4)
        studies = sorted({dcmread(p, stop_before_pixels=True).StudyInstanceUID
                          for p in sets["one"].iterdir()})
        instances = []
        for path in sorted(sets["one"].iterdir())[:100]:
            ds = dcmread(path, stop_before_pixels=True)
            instances.append((ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))

        def servers(round_number: int, kind: str) -> list[Server]:
            base = args.port_base
            ours: Server = Ours(work / f"ours-{kind}-{round_number}", range(base, base + 4))
            found = [ours]
            if peer:
                found.append(Orthanc(work / f"orthanc-{kind}-{round_number}",
                                     range(base + 4, base + 8)))
            # Interleaved: who goes first alternates from one round to the next.
            return found if round_number % 2 == 0 else found[::-1]

        for round_number in range(args.rounds if "retrieval" not in skip else 0):
            for server in servers(round_number, "retrieval"):
                server.work.mkdir()
                retrieval_round(server, work, sets, studies, instances, figures)
                shutil.rmtree(server.work)
            print(f"round {round_number + 1}: retrieval done", flush=True)
        lower = {line for line, _ in figures.order if "(ms)" in line or "(MB)" in line}
        figures.report(lower)

        if "import" not in skip:
            for round_number in range(args.rounds):
                for server in servers(round_number, "import"):
                    size = sum(p.stat().st_size for p in sets["one"].iterdir()) / 1e6
                    # Orthanc 1.10 only copies: its figure stands beside both of ours.
                    modes = [False, True] if isinstance(server, Ours) else [False]
                    for in_place in modes:
                        server.work.mkdir()
                        if isinstance(server, Orthanc):
                            server.start()
                        try:
                            seconds = import_into(server, sets["one"], in_place)
                        finally:
                            server.stop()
                        for label, mine in (("archive import of a folder, files copied",
                                             not in_place),
                                            ("archive import in place (Orthanc: copied)",
                                             in_place or not isinstance(server, Ours))):
                            if mine:
                                figures.add(f"{label} (files/s)", server.name,
                                            args.instances / seconds)
                                figures.add(f"{label} (MB/s)", server.name, size / seconds)
                        # The links of an import in place go, the files they point at stay.
                        shutil.rmtree(server.work)
                print(f"round {round_number + 1}: import done", flush=True)
            figures.report(lower)

        if "qido" not in skip:
            patients = small_studies(work / "qido-set", args.qido_studies)
            split(work / "qido-set", 4)
            step = max(1, len(patients) // args.qido_queries)
            asked = patients[::step][:args.qido_queries]
            started: list[Server] = []
            try:
                for server in servers(0, "qido"):
                    server.work.mkdir()
                    server.start()
                    started.append(server)
                    ingest(server, sorted((work / "qido-set").iterdir()))
                print(f"qido: {args.qido_studies} studies stored in each", flush=True)
                for round_number in range(args.rounds):
                    order = started if round_number % 2 == 0 else started[::-1]
                    for server in order:
                        p50, p95 = qido(server, asked)
                        figures.add(f"QIDO-RS study search, {args.qido_studies:,} studies, "
                                    "p50 (ms)", server.name, p50)
                        figures.add(f"QIDO-RS study search, {args.qido_studies:,} studies, "
                                    "p95 (ms)", server.name, p95)
            finally:
                for server in started:
                    server.stop()
            lower = {line for line, _ in figures.order if "(ms)" in line or "(MB)" in line}
            figures.report(lower)

        if "big" not in skip:
            big = work / "big" / "big.dcm"
            big.parent.mkdir()
            big_object(big, args.big_mb)
            size = big.stat().st_size / 1e6
            for server in servers(0, "big"):
                server.work.mkdir()
                server.start()
                try:
                    for path, action in (("C-STORE", lambda s: ingest(s, [big.parent])),
                                         ("STOW-RS", lambda s: stow(s, big)),
                                         ("WADO-RS", lambda s: wado_instances(s, [(
                                             "1.2.250.1.999.54.55.1",
                                             "1.2.250.1.999.54.55.1.1",
                                             "1.2.250.1.999.54.55.1.1.1")]))):
                        with PeakMemory(server.pid) as memory:
                            start = time.perf_counter()
                            run: Callable[[Server], Any] = action
                            try:
                                run(server)
                                failed = ""
                            except (httpx.HTTPError, RuntimeError) as exc:
                                failed = f" FAILED: {str(exc)[:120]}"
                            seconds = time.perf_counter() - start
                        figures.add(f"{size:,.0f} MB object through {path}, peak RSS above "
                                    "idle (MB)", server.name, memory.above_idle_mb)
                        print(f"{server.name}: {size:,.0f} MB through {path} in "
                              f"{seconds:.1f} s, peak RSS {memory.above_idle_mb:,.0f} MB "
                              f"above idle{failed}", flush=True)
                finally:
                    server.stop()
    lower = {line for line, _ in figures.order if "(ms)" in line or "(MB)" in line}
    figures.report(lower)
    if not peer:
        print(NO_PEER)


if __name__ == "__main__":
    main()
