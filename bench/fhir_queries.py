"""FHIR query latency: $ihe-pix, PDQm search by family + birth date, and $match against
`mpi serve` with a loaded index, K concurrent clients.

Prints, for SQLite and PostgreSQL: requests/s and latency percentiles per query, measured in
the same run beside the floor (`GET /health`, no database work), the ratio of each query's
throughput to the floor's, and the server's peak memory. Every request carries a bearer token
(checked: signature, claims, client not revoked). With several rounds, each query kind is
measured once per round, the kinds interleaved, and the figures are the medians with their
range (min-max) over the rounds: the machine is shared.

On PostgreSQL `mpi serve` answers HTTP with its worker processes (MPI_HTTP_WORKERS, one per
core unless --http-workers says otherwise); SQLite keeps one process.

The population (adapters/evaluation/population.py, French demographics) is loaded straight into the
tables, each true person as one person of the index: loading is not what is measured.

    python bench/fhir_queries.py [--persons 100000] [--clients 8] [--requests 2000]
                                 [--rounds 3] [--http-workers N]
                                 [--databases sqlite,postgresql]

PostgreSQL: a scratch database `mpi_bench_fhir` is (re)created on the server given by
MPI_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from adt_feed import Server, percentile  # noqa: E402
from scratch import database_url  # noqa: E402

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities  # noqa: E402
from adapters.evaluation.population import SourceRow, generate_population, source_record  # noqa: E402
from adapters.sql.engine import create_engine_for  # noqa: E402
from adapters.sql.migrate import upgrade  # noqa: E402
from adapters.sql.repositories.records import _record_values  # noqa: E402
from adapters.sql.tables import links, persons, source_records, sync_authorities  # noqa: E402

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
GENDER = {"M": "male", "F": "female"}
CHUNK = 5000


def load(url: str, rows: list[SourceRow]) -> None:
    """Persons, records and links straight into the tables, in large batches."""
    engine = create_engine_for(url)
    upgrade(engine)
    now = datetime.now(UTC)
    person_of: dict[str, int] = {}
    person_rows, record_rows, link_rows = [], [], []
    for number, row in enumerate(rows, start=1):
        if row.person_key not in person_of:
            person_of[row.person_key] = len(person_of) + 1
            person_rows.append({"id": person_of[row.person_key], "status": "active",
                                "merged_into": None, "created_at": now})
        values = _record_values(source_record(row), 1)
        values["id"] = number
        record_rows.append(values)
        link_rows.append({"record_id": number, "person_id": person_of[row.person_key],
                          "method": "new", "score": None, "evidence": {},
                          "decided_by": "bench", "decided_at": now})
    with engine.begin() as connection:
        sync_authorities(connection, REGISTRY.all)
        for table, batch in ((persons, person_rows), (source_records, record_rows),
                             (links, link_rows)):
            for start in range(0, len(batch), CHUNK):
                connection.execute(insert(table), batch[start:start + CHUNK])
        if engine.dialect.name == "postgresql":
            for table in ("persons", "source_records"):
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                        f"(SELECT max(id) FROM {table}))"))
            connection.execute(text("ANALYZE"))
    engine.dispose()


def patient_of(row: SourceRow) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "name": [
        {"use": "official", "family": row.birth_family_name, "given": list(row.given_names)}]}
    if row.sex in GENDER:
        resource["gender"] = GENDER[row.sex]
    if row.birth_date:
        resource["birthDate"] = row.birth_date.isoformat()
    if row.city or row.postcode:
        resource["address"] = [{"city": row.city, "postalCode": row.postcode}]
    return resource


def requests_for(rows: list[SourceRow], count: int, seed: int = 11) -> dict[str, list[Any]]:
    rng = random.Random(seed)
    named = [r for r in rows if r.birth_family_name and r.birth_date]
    oid = {a.code: a.oid for a in REGISTRY.all}
    return {
        "health": [("GET", "/health", None, None) for _ in range(count)],
        "$ihe-pix": [("GET", "/fhir/Patient/$ihe-pix",
                      {"sourceIdentifier": f"urn:oid:{oid[r.authority]}|{r.local_id}"}, None)
                     for r in (rng.choice(rows) for _ in range(count))],
        "PDQm family+birthdate": [("GET", "/fhir/Patient",
                                   {"family": r.birth_family_name,
                                    "birthdate": r.birth_date.isoformat()}, None)
                                  for r in (rng.choice(named) for _ in range(count))],
        "$match": [("POST", "/fhir/Patient/$match", None,
                    {"resourceType": "Parameters", "parameter": [
                        {"name": "resource", "resource": patient_of(r)},
                        {"name": "count", "valueInteger": 5}]})
                   for r in (rng.choice(named) for _ in range(count))],
    }


async def client_lane(client: httpx.AsyncClient, work: list[Any], latencies: list[float],
                      failures: list[str]) -> None:
    for method, path, params, body in work:
        started = time.perf_counter()
        response = await client.request(method, path, params=params, json=body)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            failures.append(f"{response.status_code} {response.text[:200]}")


async def drive(base: str, work: list[Any], clients: int,
                token: str) -> tuple[list[float], float, list[str]]:
    latencies: list[float] = []
    failures: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        for method, path, params, body in work[:clients]:  # warm the connections
            await client.request(method, path, params=params, json=body)
        lanes = [work[i::clients] for i in range(clients)]
        started = time.perf_counter()
        await asyncio.gather(*(client_lane(client, lane, latencies, failures) for lane in lanes))
        elapsed = time.perf_counter() - started
    return latencies, elapsed, failures


def _spread(values: list[float], digits: int = 2, scale: float = 1.0) -> str:
    """The median, and the range when there are several values."""
    median = statistics.median(values) * scale
    if len(values) == 1:
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} ({min(values) * scale:,.{digits}f}-{max(values) * scale:,.{digits}f})"


def run(database: str, rows: list[SourceRow], work: dict[str, list[Any]], clients: int,
        rounds: int, http_workers: int | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mpi-bench-"))
    url = database_url(database, workdir, "mpi_bench_fhir")
    started = time.perf_counter()
    load(url, rows)
    print(f"{database}: {len(rows):,} records loaded in {time.perf_counter() - started:.0f} s")
    settings = {} if http_workers is None else {"http_workers": str(http_workers)}
    server = Server(url, workdir, **settings)
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        rates: dict[str, list[float]] = {name: [] for name in work}
        p50s: dict[str, list[float]] = {name: [] for name in work}
        p95s: dict[str, list[float]] = {name: [] for name in work}
        p99s: dict[str, list[float]] = {name: [] for name in work}
        errors: dict[str, int] = dict.fromkeys(work, 0)
        for _ in range(rounds):
            for name, requests in work.items():
                # a regional viewer's token (every request checks its signature and claims)
                token = server.token("system/Patient.rs system/ImagingStudy.rs")
                latencies, elapsed, failures = asyncio.run(drive(base, requests, clients,
                                                                 token))
                rates[name].append(len(latencies) / elapsed)
                p50s[name].append(percentile(latencies, 0.50))
                p95s[name].append(percentile(latencies, 0.95))
                p99s[name].append(percentile(latencies, 0.99))
                errors[name] += len(failures)
                if failures:
                    print(f"    {name}: first failure: {failures[0]}")
        floor = statistics.median(rates["health"])
        print(f"  {rounds} round(s), median (min-max); ratio: req/s against GET /health's")
        print(f"  {'query':<23} {'req/s':>18} {'ratio':>6} {'p50 ms':>22} {'p95 ms':>22} "
              f"{'p99 ms':>22} {'errors':>6}")
        for name in work:
            print(f"  {name:<23} {_spread(rates[name], 0):>18} "
                  f"{statistics.median(rates[name]) / floor:>6.2f} "
                  f"{_spread(p50s[name], 1, 1000):>22} {_spread(p95s[name], 1, 1000):>22} "
                  f"{_spread(p99s[name], 1, 1000):>22} {errors[name]:>6}")
        print(f"  peak memory of mpi serve (and its workers): {server.peak_memory_mb():.0f} MB")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="per query kind")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--http-workers", type=int, default=None,
                        help="MPI_HTTP_WORKERS of the server (default: its own)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = generate_population(args.persons)
    print(f"population: {args.persons:,} persons, {len(rows):,} records "
          f"(generated in {time.perf_counter() - started:.0f} s); {args.clients} clients, "
          f"{args.requests} requests per query kind, {os.cpu_count()} cores")
    work = requests_for(rows, args.requests)
    for database in args.databases.split(","):
        run(database.strip(), rows, work, args.clients, args.rounds, args.http_workers)


if __name__ == "__main__":
    main()
