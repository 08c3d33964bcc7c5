"""The console's pages against `mpi serve` with a loaded index: a person with 500 studies at
3 sites, the review queue with 5,000 open tasks, and the indicators on the population.

Prints, for SQLite and PostgreSQL: server time p50/p95 (one logged-in browser session on
loopback, requests one after the other) and page weight of each page, measured in the same
run beside `GET /health` (no database work). Every person page and review task it reads is
traced in the access trail, as in use. The population (adapters/evaluation/population.py) is
loaded straight into the tables, as bench/fhir_queries.py does; the studies, tasks and
automatic links are written straight into theirs: loading is not what is measured.

    python bench/console.py [--persons 100000] [--studies 500] [--tasks 5000]
                            [--requests 100] [--databases sqlite,postgresql]

PostgreSQL: a scratch database `mpi_bench_console` is (re)created on the server given by
MPI_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, select, text, update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from adt_feed import Server, free_port, percentile  # noqa: E402
from fhir_queries import load  # noqa: E402
from scratch import database_url  # noqa: E402

from adapters.evaluation.population import generate_population  # noqa: E402
from adapters.sql.engine import create_engine_for  # noqa: E402
from adapters.sql.tables import (  # noqa: E402
    archive_instances,
    archive_patients,
    archive_series,
    archive_studies,
    links,
    review_tasks,
    source_records,
)

SITES = ("CHRU", "ICL", "MRUN")
MODALITIES = ("CT", "MR", "CR", "US", "PT")
PASSWORD = "bench console password"
FIELDS = {"family_name": {"level": "exact", "weight": 8.9},
          "given_name": {"level": "far", "weight": -5.6},
          "birth_date": {"level": "exact", "weight": 12.2}, "sex": {"level": "exact",
                                                                  "weight": 1.0}}


def enrich(url: str, studies: int, tasks: int, seed: int = 5) -> tuple[int, int]:
    """A person's studies at three sites, open review tasks, and automatic links with their
    scores spread over the last year. Returns (the person's id, a task's id)."""
    rng = random.Random(seed)
    engine = create_engine_for(url)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        record_id, person_id = connection.execute(
            select(links.c.record_id, links.c.person_id).order_by(links.c.record_id)
            .limit(1)).one()
        record_ids = [r for (r,) in connection.execute(select(source_records.c.id))]
        patients = []
        for number, site in enumerate(SITES, start=1):
            patients.append(connection.execute(insert(archive_patients).values(
                authority=site, patient_id=f"B{number:06d}", record_id=record_id,
                family_name="BENCH", given_names=["Study"], first_received_at=now,
                last_received_at=now).returning(archive_patients.c.id)).scalar_one())
        for number in range(studies):
            uid = f"1.2.826.0.1.3680043.10.999.{number}"
            study = connection.execute(insert(archive_studies).values(
                study_instance_uid=uid, patient_ref=patients[number % len(SITES)],
                study_date=date(2026, 1, 1) - timedelta(days=number * 7),
                description=f"EXAMEN {number}", first_received_at=now,
                last_received_at=now).returning(archive_studies.c.id)).scalar_one()
            series = connection.execute(insert(archive_series).values(
                series_instance_uid=f"{uid}.1", study_ref=study,
                modality=MODALITIES[number % len(MODALITIES)], series_number=1)
                .returning(archive_series.c.id)).scalar_one()
            connection.execute(insert(archive_instances), [{
                "sop_instance_uid": f"{uid}.1.{i}", "series_ref": series,
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                "transfer_syntax_uid": "1.2.840.10008.1.2.1", "instance_number": i,
                "blob_key": f"{uid}/{i}.dcm", "size": 500_000, "sha256": f"{number:032d}{i:032d}",
                "received_at": now, "source": "BENCH", "version": 1} for i in range(1, 3)])
        task_rows = []
        for _ in range(tasks):
            score = rng.uniform(0.5, 0.9999)
            task_rows.append({
                "record_id": rng.choice(record_ids), "person_id": rng.randint(1, person_id + 1000),
                "candidate_record_id": None, "score": score,
                "evidence": {"weight": 10.0, "probability": score, "fields": FIELDS},
                "status": "open", "kind": "duplicate",
                "created_at": now - timedelta(days=rng.randint(0, 365))})
        top = connection.execute(select(links.c.person_id).order_by(
            links.c.person_id.desc()).limit(1)).scalar_one()
        for row in task_rows:
            row["person_id"] = min(row["person_id"], top)
        for start in range(0, len(task_rows), 1000):
            connection.execute(insert(review_tasks), task_rows[start:start + 1000])
        task_id = connection.execute(select(review_tasks.c.id).limit(1)).scalar_one()
        # A third of the links automatic and scored.
        connection.execute(update(links).where(links.c.record_id % 3 == 0).values(
            method="auto", score=0.99995))
        if engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE"))
    engine.dispose()
    return person_id, task_id


def login(server: Server, data_dir: Path) -> httpx.Client:
    subprocess.run([server._mpi, "user", "add", "bench.vigilance", "--role",
                    "identity-vigilance", "--role", "clinician", "--password-stdin",
                    "--data-dir", str(data_dir)], env=server._env, check=True,
                   input=f"{PASSWORD}\n{PASSWORD}\n", capture_output=True, text=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=60)
    form = client.get("/console/login")
    logged = client.post("/console/login", data={
        "username": "bench.vigilance", "password": PASSWORD,
        "login_csrf": form.cookies["mpi_login"]})
    assert logged.status_code == 303, logged.text
    return client


def measure(client: httpx.Client, path: str, count: int) -> tuple[list[float], int, int]:
    client.get(path)  # warm
    latencies, weight, failures = [], 0, 0
    for _ in range(count):
        started = time.perf_counter()
        answer = client.get(path)
        latencies.append(time.perf_counter() - started)
        weight = len(answer.content)
        failures += answer.status_code != 200
    return latencies, weight, failures


def run(database: str, persons: int, studies: int, tasks: int, count: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mpi-bench-"))
    url = database_url(database, workdir, "mpi_bench_console")
    rows = generate_population(persons)
    started = time.perf_counter()
    load(url, rows)
    person_id, task_id = enrich(url, studies, tasks)
    print(f"{database}: {len(rows):,} records, {studies} studies of one person, {tasks:,} "
          f"open tasks loaded in {time.perf_counter() - started:.0f} s")
    os.environ["MPI_DICOM_PORT"] = str(free_port())  # beside another `mpi serve`
    server = Server(url, workdir)
    try:
        client = login(server, workdir)
        named = next(r for r in rows if r.birth_family_name)
        pages = {
            "GET /health": "/health",
            f"person ({studies} studies)": f"/console/persons/{person_id}",
            f"review queue ({tasks:,})": "/console/review",
            "review queue, filtered": "/console/review?establishment=CHRU&band=mid&age=30",
            "review task": f"/console/review/{task_id}",
            "indicators": "/console/indicators",
            "search by name": f"/console/persons?q={named.birth_family_name}",
        }
        print(f"  {'page':<28}{'p50 ms':>9}{'p95 ms':>9}{'KiB':>9}{'errors':>8}")
        for name, path in pages.items():
            latencies, weight, failures = measure(client, path, count)
            print(f"  {name:<28}{percentile(latencies, 0.50) * 1000:>9.1f}"
                  f"{percentile(latencies, 0.95) * 1000:>9.1f}{weight / 1024:>9.1f}"
                  f"{failures:>8}")
        print(f"  peak memory of mpi serve: {server.peak_memory_mb():.0f} MB")
        client.close()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=100, help="per page")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"console pages: {args.persons:,} persons, {args.requests} requests per page, "
          f"{os.cpu_count()} cores")
    for database in args.databases.split(","):
        run(database.strip(), args.persons, args.studies, args.tasks, args.requests)


if __name__ == "__main__":
    main()
