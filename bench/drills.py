"""Fault drills at full size, each printing what it did and what it found:

- ``kill``: a 20,000-message realistic feed over 4 MLLP connections, `mpi serve` SIGKILLed
  three times at random moments and started again (SQLite and PostgreSQL): messages sent,
  acknowledged, applied; restarts; time to recover; peak memory; the index against an
  uninterrupted run of the same messages; ITI-10 notifications delivered.
- ``restart``: PostgreSQL (a cluster of the drill's own) stopped 20 s during the feed and
  DICOM ingest: what the service answered meanwhile, how long it took to be ready again.
- ``scale``: three `mpi serve` behind HAProxy on one PostgreSQL, one SIGKILLed under load.

    python bench/drills.py [--drills kill,restart,scale] [--messages 20000] [--kills 3]
                           [--outage 20] [--databases sqlite,postgresql]

Ports are taken from MPI_DRILL_PORTS (default 24000-24999). PostgreSQL scratch databases are
(re)created on MPI_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/
test); the restart drill makes its own cluster with /usr/lib/postgresql/15/bin.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MPI_DRILL_PORTS", "24000-24999")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch import database_url  # noqa: E402

from adapters.sql.engine import create_engine_for  # noqa: E402
from adapters.sql.migrate import upgrade  # noqa: E402
from tests.drills.db_restart_drill import run_restart_drill  # noqa: E402
from tests.drills.harness import free_port, own_peak_memory_mb  # noqa: E402
from tests.drills.kill_drill import run_kill_drill  # noqa: E402
from tests.drills.scale_out_drill import run_scale_out_drill  # noqa: E402


def say(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)


def migrated(url: str) -> str:
    engine = create_engine_for(url)
    upgrade(engine)
    engine.dispose()
    return url


def kill(workdir: Path, kind: str, messages: int, kills: int) -> None:
    work = workdir / f"kill-{kind}"
    work.mkdir()
    url = migrated(database_url(kind, work, "mpi_drill_kill"))
    reference_dir = work / "reference-db"
    reference_dir.mkdir()
    reference = database_url(kind, reference_dir, "mpi_drill_kill_reference")
    report = run_kill_drill(work, url, reference, messages, kills, progress=say)
    for line in report.lines(f"kill -9 drill, {kind}"):
        print(line)
    f = report.facts
    lost = report.messages - len(f.applied_per_message)
    twice = sum(1 for n in f.applied_per_message.values() if n > 1)
    print(f"  lost {lost}, applied twice {twice}, A31 missing "
          f"{len(report.a31_expected - set(report.a31_received))}; index differences: "
          f"{report.after.differences(report.uninterrupted) or 'none'}")
    latencies = sorted(report.sender.latencies)
    if latencies:
        print(f"  ACK latency p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 "
              f"{latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms (the feed's own "
              "figures beside it: bench/adt_feed.py)")


def restart(workdir: Path, messages: int, outage: float) -> None:
    work = workdir / "restart"
    work.mkdir()
    report = run_restart_drill(work, free_port(), messages, outage, progress=say)
    for line in report.lines("database restart drill, postgresql"):
        print(line)
    print(f"  transient answers by text: {report.errors}")


def scale(workdir: Path, messages: int) -> None:
    work = workdir / "scale"
    work.mkdir()
    url = migrated(database_url("postgresql", work, "mpi_drill_scale"))
    reference = database_url("postgresql", work, "mpi_drill_scale_reference")
    report = run_scale_out_drill(work, url, reference, messages, progress=say)
    for line in report.lines("scale-out drill"):
        print(line)
    print(f"  index differences: {report.after.differences(report.uninterrupted) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drills", default="kill,restart,scale")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--outage", type=float, default=20.0)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    drills = args.drills.split(",")
    with tempfile.TemporaryDirectory(prefix="mpi-drills-") as folder:
        workdir = Path(folder)
        if "kill" in drills:
            for kind in args.databases.split(","):
                kill(workdir, kind, args.messages, args.kills)
        if "restart" in drills:
            restart(workdir, args.messages // 4, args.outage)
        if "scale" in drills:
            scale(workdir, args.messages // 4)
    print(f"peak memory of this process (senders, consumer, replays): "
          f"{own_peak_memory_mb():.0f} MB")


if __name__ == "__main__":
    main()
