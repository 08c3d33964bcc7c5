"""ADT feed throughput: N PAM-FR messages over K concurrent MLLP connections into `mpi serve`.

Prints, for SQLite and PostgreSQL: messages/s with every ACK waited for (each message committed
before its ACK, the matcher on), ACK latency percentiles, the server's peak memory; and beside
them, measured in the same run: on PostgreSQL, the database's own rate of single-insert
commits with as many clients (pgbench, when installed, on the same server), and the floor of
parsing alone (our ER7 reader and the `hl7` package).

The feed is the synthetic population's (adapters/evaluation/population.py: French names by
frequency, typing errors, twins, several records per person across establishments), one
ADT^A28 per source record, dealt to the connections in turn; ``--feed simple``
sends the older feed of 25 family names instead. With several rounds, every round measures
pgbench and the feed again on a fresh database, and the figures are medians with their range.

    python bench/adt_feed.py [--messages 20000] [--connections 4] [--rounds 3]
                             [--workers N] [--feed realistic|simple]
                             [--databases sqlite,postgresql]

PostgreSQL: a scratch database `mpi_bench_adt` is (re)created on the server given by
MPI_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import hl7

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch import database_url  # noqa: E402

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities  # noqa: E402
from adapters.evaluation.population import generate_population  # noqa: E402
from adapters.evaluation.replay import a28_message  # noqa: E402
from adapters.hl7v2.er7 import parse  # noqa: E402
from adapters.hl7v2.mllp import FrameDecoder, frame  # noqa: E402
from mpi.normalize import nir_key  # noqa: E402

SITES = {
    "CHRU": "1.2.250.1.999.54.1",
    "ICL": "1.2.250.1.999.54.2",
    "MRUN": "1.2.250.1.999.54.3",
    "CCEG": "1.2.250.1.999.54.4",
}
FAMILY = ["MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS",
          "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFÈVRE", "LEROY", "ROUX", "DAVID", "BERTRAND",
          "MOREL", "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT", "FONTAINE", "ROUSSEAU"]
GIVEN = ["Jean", "Marie", "Pierre", "Hélène", "Louis", "Camille", "Léa", "Lucas", "Chloé",
         "Hugo", "Manon", "Jules", "Emma", "Nathan", "Inès", "François", "Zoé", "Théo"]


def nir(rng: random.Random, sex: str, birth: str) -> str:
    body = f"{'1' if sex == 'M' else '2'}{birth[2:4]}{birth[4:6]}54395{rng.randrange(1000):03d}"
    return f"{body}{nir_key(body):02d}"


def generate(count: int, connections: int, seed: int = 7) -> list[list[str]]:
    """Messages per connection (connection i speaks for one establishment): mostly A28, some
    A31 updates; a third of the identities qualified with an INS shared across sites."""
    rng = random.Random(seed)
    sites = list(SITES)
    streams: list[list[str]] = [[] for _ in range(connections)]
    shared: list[tuple[str, str, str, str, str]] = []
    for n in range(count):
        lane = n % connections
        site = sites[lane % len(sites)]
        ipp = f"{lane}{n:09d}"
        event = "A28"
        if shared and rng.random() < 0.25:
            family, given, birth, sex, ins = rng.choice(shared)
        else:
            family, given = rng.choice(FAMILY), rng.choice(GIVEN)
            birth = f"{rng.randrange(1930, 2024)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
            sex = rng.choice("MF")
            ins = nir(rng, sex, birth) if rng.random() < 0.33 else ""
            if ins:
                shared.append((family, given, birth, sex, ins))
        if streams[lane] and rng.random() < 0.1:
            event = "A31"
            ipp = streams[lane][-1].split("PID|1||", 1)[1].split("^", 1)[0]
        pid3 = f"{ipp}^^^{site}&{SITES[site]}&ISO^PI"
        if ins:
            pid3 += f"~{ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
        reliability = "VALI" if ins else "PROV"
        fields = [""] * 33
        fields[:4] = ["PID", "1", "", pid3]
        fields[5] = f"{family}^{given}^{given}^^^^L"
        fields[7], fields[8] = birth, sex
        fields[11] = f"{rng.randrange(1, 99)} rue Stanislas^^Nancy^^54000^FRA^H"
        fields[13] = f"03833{rng.randrange(10000, 99999)}"
        fields[23] = "54395"
        fields[32] = reliability
        streams[lane].append("\r".join([
            f"MSH|^~\\&|HIS|{site}|MPI|GCS|20261129080000||ADT^{event}^ADT_A05|{site}{n:010d}|P|"
            f"2.5^FRA^2.11|||||FRA|UNICODE UTF-8|FRE",
            "EVN||20261129080000",
            "|".join(fields),
            "PV1|1|N",
        ]) + "\r")
    return streams


def generate_realistic(count: int, connections: int, seed: int = 2026) -> list[list[str]]:
    """``count`` ADT^A28 of the synthetic population's records, in its order, dealt to the
    connections in turn (each carries every establishment's messages: the establishments'
    volumes differ too much for one connection each to load them evenly)."""
    registry = load_authorities(DEFAULT_AUTHORITIES_FILE)
    rows = generate_population(max(100, count * 2 // 3 + 50), seed)[:count]
    streams: list[list[str]] = [[] for _ in range(connections)]
    for number, row in enumerate(rows):
        streams[number % connections].append(a28_message(row, number, registry).decode("utf-8"))
    return streams


def pgbench_commits(url: str, clients: int, seconds: int) -> float | None:
    """Single-row INSERT transactions committed per second by ``clients`` pgbench clients on
    the database of ``url`` (a table of its own), None without pgbench."""
    from sqlalchemy import create_engine, make_url
    from sqlalchemy.pool import NullPool

    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return None
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS bench_single_insert")
        connection.exec_driver_sql("CREATE TABLE bench_single_insert (id bigserial PRIMARY KEY, "
                                   "sent_at timestamptz NOT NULL, body text NOT NULL)")
    parsed = make_url(url)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("INSERT INTO bench_single_insert (sent_at, body) VALUES (now(), 'ADT');\n")
    env = dict(os.environ, PGPASSWORD=parsed.password or "")
    try:
        done = subprocess.run(
            [pgbench, "-n", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
             "-T", str(seconds), "-f", script.name, "-h", parsed.host or "127.0.0.1",
             "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres",
             parsed.database or "postgres"],
            env=env, capture_output=True, text=True, check=True)
    finally:
        os.unlink(script.name)
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE bench_single_insert")
        engine.dispose()
    for line in done.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(f"pgbench printed no rate: {done.stdout}")


def parse_floor(messages: list[str]) -> dict[str, float]:
    """Messages per second when merely parsed (every PID field read), with two parsers."""
    results = {}
    start = time.perf_counter()
    for message in messages:
        pid = parse(message).first("PID")
        assert pid is not None
        for field in range(1, 33):
            pid.value(field)
    results["our ER7 reader"] = len(messages) / (time.perf_counter() - start)
    start = time.perf_counter()
    for message in messages:
        parsed = hl7.parse(message)
        parsed.segment("PID")
    results["hl7 package"] = len(messages) / (time.perf_counter() - start)
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, database_url: str, data_dir: Path, **settings: str) -> None:
        """`mpi serve` on ``database_url``; ``settings`` are MPI_* variables (workers="2")."""
        self.mllp_port, self.http_port = free_port(), free_port()
        env = dict(os.environ, MPI_DATABASE_URL=database_url, MPI_LOG_LEVEL="WARNING",
                   **{f"MPI_{k.upper()}": v for k, v in settings.items()})
        mpi = shutil.which("mpi") or str(Path(sys.executable).parent / "mpi")
        self._env, self._mpi, self._data_dir = env, mpi, data_dir
        subprocess.run([mpi, "db", "upgrade", "--data-dir", str(data_dir)], env=env, check=True,
                       capture_output=True)
        self.process = subprocess.Popen(
            [mpi, "serve", "--host", "127.0.0.1", "--mllp-port", str(self.mllp_port),
             "--http-port", str(self.http_port), "--data-dir", str(data_dir)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        # its worker processes start (and import everything) on a shared, busy machine
        deadline = time.time() + 180
        while time.time() < deadline and self.process.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        self.process.kill()
        _, stderr = self.process.communicate()
        raise RuntimeError(f"mpi serve did not start: {stderr.decode(errors='replace')[-2000:]}")

    def token(self, scopes: str = "system/*.rs", establishment: str | None = None) -> str:
        """A bearer token the way a system gets one: `mpi client add`, then client
        credentials at /oauth/token (valid five minutes: a run asks for one per query kind)."""
        command = [self._mpi, "client", "add", f"bench-{uuid.uuid4().hex[:8]}", "--scope",
                   scopes, "--data-dir", str(self._data_dir)]
        if establishment:
            command += ["--establishment", establishment]
        added = json.loads(subprocess.run(command, env=self._env, check=True,
                                          capture_output=True, text=True).stdout)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/oauth/token",
            data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
            headers={"Authorization": "Basic " + base64.b64encode(
                f"{added['client_id']}:{added['client_secret']}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=30) as answer:
            token: str = json.load(answer)["access_token"]
        return token

    def peak_memory_mb(self) -> float:
        """Peak resident memory of `mpi serve` and its worker processes, added up."""
        total = 0
        pending = [self.process.pid]
        while pending:
            pid = pending.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pending.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
            total += next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        return total / 1024

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


async def send_stream(port: int, messages: list[str], latencies: list[float],
                      errors: list[str]) -> None:
    """One HIS connection: send, wait for the ACK, send the next."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = FrameDecoder(1 << 20)
    try:
        for message in messages:
            started = time.perf_counter()
            writer.write(frame(message.encode("utf-8")))
            frames: list = []
            while not frames:
                chunk = await reader.read(65536)
                if not chunk:
                    raise RuntimeError("connection closed")
                frames = decoder.feed(chunk)
            latencies.append(time.perf_counter() - started)
            if b"MSA|AA|" not in frames[0].payload:
                errors.append(frames[0].payload.decode("utf-8", "replace")[:300])
    finally:
        writer.close()


async def send_all(port: int, streams: list[list[str]], latencies: list[list[float]],
                   errors: list[str]) -> None:
    # One event loop drives every connection: a light peer leaves the cores to the server.
    await asyncio.gather(*(send_stream(port, s, latencies[i], errors)
                           for i, s in enumerate(streams)))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_feed(database: str, streams: list[list[str]], workers: int | None,
             pgbench_seconds: int) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="mpi-bench-"))
    url = database_url(database, workdir, "mpi_bench_adt")
    peer = (pgbench_commits(url, len(streams), pgbench_seconds)
            if database == "postgresql" and pgbench_seconds else None)
    server = Server(url, workdir, **({} if workers is None else {"workers": str(workers)}))
    latencies: list[list[float]] = [[] for _ in streams]
    errors: list[str] = []
    started = time.perf_counter()
    asyncio.run(send_all(server.mllp_port, streams, latencies, errors))
    elapsed = time.perf_counter() - started
    memory = server.peak_memory_mb()
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    every = [x for lane in latencies for x in lane]
    if errors:
        print(f"  {len(errors)} messages not accepted, first: {errors[0]!r}")
    return {
        "messages": len(every),
        "per_second": len(every) / elapsed,
        "p50": percentile(every, 0.50) * 1000,
        "p95": percentile(every, 0.95) * 1000,
        "p99": percentile(every, 0.99) * 1000,
        "mean": statistics.fmean(every) * 1000,
        "peak_mb": memory,
        "errors": len(errors),
        "pgbench": peer if peer is not None else float("nan"),
    }


def _spread(values: list[float], digits: int = 2) -> str:
    """The median, and the range (min-max) when there are several values."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help="MPI_WORKERS of the server (default: its own)")
    parser.add_argument("--feed", choices=("realistic", "simple"), default="realistic")
    parser.add_argument("--pgbench-seconds", type=int, default=10,
                        help="length of each pgbench run (0: none)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    streams = (generate_realistic if args.feed == "realistic" else generate)(
        args.messages, args.connections)
    flat = [m for s in streams for m in s]
    print(f"ADT feed ({args.feed}): {len(flat)} messages over {args.connections} MLLP "
          f"connections, every ACK waited for ({os.cpu_count()} cores), {args.rounds} round(s)")
    print("floor, parsing only (same messages, one thread):")
    for name, rate in parse_floor(flat).items():
        print(f"  {name:<16} {rate:>10,.0f} msg/s  ({1e6 / rate:,.0f} µs/msg)")
    print(f"{'database':<12}{'round':>6}{'msg/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'peak MB':>9}{'errors':>8}{'pgbench tps':>13}{'ratio':>8}")
    results: dict[str, list[dict[str, float]]] = {}
    for round_number in range(1, args.rounds + 1):
        for database in args.databases.split(","):
            database = database.strip()
            r = run_feed(database, streams, args.workers, args.pgbench_seconds)
            results.setdefault(database, []).append(r)
            peer = r["pgbench"]
            print(f"{database:<12}{round_number:>6}{r['per_second']:>10,.0f}{r['p50']:>9.2f}"
                  f"{r['p95']:>9.2f}{r['p99']:>9.2f}{r['peak_mb']:>9.0f}{r['errors']:>8}"
                  + (f"{peer:>13,.0f}{r['per_second'] / peer:>8.3f}" if peer == peer else ""),
                  flush=True)
    print("medians (min-max) over the rounds:")
    for database, rounds in results.items():
        line = (f"  {database:<12} {_spread([r['per_second'] for r in rounds], 0)} msg/s, "
                f"ACK p50 {_spread([r['p50'] for r in rounds])} ms, "
                f"p99 {_spread([r['p99'] for r in rounds])} ms")
        peers = [r["pgbench"] for r in rounds if r["pgbench"] == r["pgbench"]]
        if peers:
            ratios = [r["per_second"] / r["pgbench"] for r in rounds
                      if r["pgbench"] == r["pgbench"]]
            line += (f"; pgbench single-insert commits {_spread(peers, 0)} tps, "
                     f"ratio {_spread(ratios, 3)}")
        print(line)


if __name__ == "__main__":
    main()
