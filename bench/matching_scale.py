"""Matching one new record against a growing index, on PostgreSQL and SQLite: the scale curve.

The index grows in steps (by default 100,000, 300,000, then 1,000,000 records, each linked to
its true person, bulk-loaded with multi-row INSERTs: the index, not the import path). At each
step, 2,000 records held out of the same population (some of persons in the index, others
not) are matched one by one on one connection, as the feed would: latency p50/p95/p99 of ``matcher.match``, beside the
floor measured in the same run (one record read by its primary key), candidates per record
(after the block cap) and the decisions. Then one profile of those 2,000 matches tells where
the time goes: the candidate queries, reading the candidates, profiles, comparisons, scores,
the INS check and the twin check.

    python bench/matching_scale.py [--databases postgresql,sqlite]
                                   [--steps 100000,300000,1000000] [--queries 2000]

The generated population is kept in the work folder (``--workdir``, default a temporary one)
and reused between databases. PostgreSQL: a scratch database `mpi_bench_scale` on
MPI_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch import database_url  # noqa: E402

from adapters.evaluation.population import (  # noqa: E402
    SourceRow,
    generate_population,
    read_csv,
    source_record,
    write_csv,
)

# Where the time of a match goes: a function of the profile, and the name it is reported by.
PHASES = (
    ("candidates", "candidate ids and records (SQL)"),
    ("profile_of", "normalizing the traits"),
    ("compare", "comparing, field by field"),
    ("score", "weights and probability"),
    ("vetoes_holding", "vetoes"),
    ("_may_be", "qualified INS check (SQL)"),
    ("_twin_record", "twin check on the person's records (SQL)"),
)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentiles(samples: Sequence[float]) -> str:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {at(0.50):6.2f} ms  p95 {at(0.95):6.2f} ms  p99 {at(0.99):6.2f} ms"


def _rows(workdir: Path, records: int, seed: int) -> list[SourceRow]:
    """About ``records`` rows of a seeded population, read back from the work folder when an
    earlier run wrote them."""
    path = workdir / f"population-{records}-{seed}.csv"
    if path.exists():
        return read_csv(path)
    rows = generate_population(max(1, int(records / 1.5)), seed=seed)
    random.Random(seed).shuffle(rows)  # each step of the index mixes the establishments
    write_csv(rows, path)
    return rows


def _load(container: Any, rows: Sequence[SourceRow], first_id: int,
          person_ids: dict[str, int], batch: int = 5000) -> float:
    """Insert rows as records, each linked to its true person. Returns seconds."""
    from sqlalchemy import insert, text

    from adapters.sql.repositories.records import _record_values
    from adapters.sql.tables import links, persons, source_records
    from mpi.model import LinkMethod

    started = time.perf_counter()
    now = container.clock.now()
    with container.engine.begin() as connection:
        for offset in range(0, len(rows), batch):
            chunk = rows[offset:offset + batch]
            person_rows, record_rows, link_rows = [], [], []
            for number, row in enumerate(chunk, start=first_id + offset):
                person = person_ids.get(row.person_key)
                if person is None:
                    person = person_ids[row.person_key] = len(person_ids) + 1
                    person_rows.append({"id": person, "status": "active", "merged_into": None,
                                        "created_at": now})
                values = _record_values(source_record(row), version=1)
                values.update(id=number, updated_at=now)
                record_rows.append(values)
                link_rows.append({"record_id": number, "person_id": person,
                                  "method": LinkMethod.AUTO.value, "score": None,
                                  "evidence": {}, "decided_by": "bench", "decided_at": now})
            if person_rows:
                connection.execute(insert(persons), person_rows)
            connection.execute(insert(source_records), record_rows)
            connection.execute(insert(links), link_rows)
        if connection.dialect.name == "postgresql":
            for table in ("persons", "source_records"):
                connection.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))
        connection.execute(text("ANALYZE"))
    return time.perf_counter() - started


def _measure(container: Any, fresh: Sequence[SourceRow], indexed: int
             ) -> tuple[list[float], list[float], list[int], Counter[str]]:
    from mpi.matching.profile import blocking_keys, profile_of

    matcher = container.matcher
    rng = random.Random(5)
    latencies: list[float] = []
    floor: list[float] = []
    candidates: list[int] = []
    decisions: Counter[str] = Counter()
    with container.uow_factory(read_only=True) as uow:
        for row in fresh[:50]:  # warm the caches and the prepared statements
            matcher.match(uow, source_record(row))
        for row in fresh:
            record = source_record(row)
            started = time.perf_counter()
            decision = matcher.match(uow, record)
            latencies.append(time.perf_counter() - started)
            decisions[decision.method.value if decision.person_id else
                      ("review" if decision.review else "new")] += 1
            started = time.perf_counter()
            uow.records.get(rng.randint(1, indexed))
            floor.append(time.perf_counter() - started)
            keys = {k: v for k, v in blocking_keys(profile_of(record)).items() if v}
            found, _ = uow.records.candidates(keys, matcher.block_cap, None) if keys else ([], [])
            candidates.append(len(found))
    return latencies, floor, candidates, decisions


def _profile(container: Any, fresh: Sequence[SourceRow]) -> list[str]:
    matcher = container.matcher
    profiler = cProfile.Profile()
    with container.uow_factory(read_only=True) as uow:
        records = [source_record(row) for row in fresh]
        profiler.enable()
        for record in records:
            matcher.match(uow, record)
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    cumulative: dict[str, float] = {}
    for (_, _, name), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        cumulative[name] = max(cumulative.get(name, 0.0), cum)
    lines = []
    for function, label in PHASES:
        spent = cumulative.get(function, 0.0)
        lines.append(f"    {label:<44} {spent / len(records) * 1000:6.2f} ms a record "
                     f"({spent / total:5.1%})")
    return lines


def run(kind: str, workdir: Path, steps: Sequence[int], queries: int) -> None:
    from adapters.bootstrap import bootstrap
    from adapters.settings import Settings

    # The new records: held out of the same population, so that some have their person in
    # the index (a link or a review task) and others not (a new person), as in a feed.
    rows = _rows(workdir, steps[-1] + queries, seed=32)
    rows, fresh = rows[:-queries], rows[-queries:]
    url = database_url(kind, workdir, "mpi_bench_scale")
    if kind == "sqlite":
        Path(workdir / "mpi.sqlite3").unlink(missing_ok=True)
    container = bootstrap(Settings(data_dir=workdir, database_url=url, workers=0), migrate=True)
    print(f"{kind}: one new record matched against the index ({queries} records, one "
          "connection)")
    person_ids: dict[str, int] = {}
    loaded = 0
    try:
        for step in steps:
            target = min(step, len(rows))
            seconds = _load(container, rows[loaded:target], loaded + 1, person_ids)
            loaded = target
            latencies, floor, candidates, decisions = _measure(container, fresh, loaded)
            ordered = sorted(candidates)
            print(f"  index {loaded:>8} records (+{seconds:.0f} s to load): match "
                  f"{_percentiles(latencies)} | floor (read by key) {_percentiles(floor)} | "
                  f"candidates a record mean {sum(candidates) / len(candidates):.1f}, "
                  f"p95 {ordered[int(0.95 * len(ordered))]}, max {ordered[-1]} | "
                  f"{dict(decisions)}")
        print(f"  where the time of a match goes, at {loaded} records (profiled, so slower):")
        for line in _profile(container, fresh):
            print(line)
        print(f"  peak memory of the bench process {peak_mb():.0f} MB")
    finally:
        container.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--steps", default="100000,300000,1000000")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, help="keeps the generated population")
    args = parser.parse_args()
    steps = sorted(int(step) for step in args.steps.split(","))
    with tempfile.TemporaryDirectory(prefix="mpi-bench-scale-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        for kind in args.databases.split(","):
            run(kind, workdir, steps, args.queries)


if __name__ == "__main__":
    main()
