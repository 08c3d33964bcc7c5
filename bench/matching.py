"""Matching accuracy and speed, each beside its peer measured in the same run.

1. FEBRL4 (link two files) and FEBRL3 (deduplicate one), from `recordlinkage.datasets`,
   without the social security number: pairwise precision, recall and F1 of our
   Fellegi-Sunter estimation and scoring, unsupervised (u from random pairs, m by EM per
   blocking rule, term frequencies for names), beside Splink 5 on DuckDB with a comparable
   configuration (same blocking rules, same threshold: match probability >= 0.5).
2. The shipped synthetic population (adapters/evaluation/population.py) replayed through the real feed
   path: false merges, precision and recall of automatic links, recall counting the review
   queue, review queue size (`mpi evaluate`).
3. PostgreSQL at scale: `mpi import` records/s on a generated extract; then, with an index of
   N records (bulk-loaded, each linked to its true person), the matching latency of one new
   record (candidates by index lookups, scoring, decision) p50/p95/p99, beside the latency of
   a primary-key read of one record (the floor).

    python bench/matching.py [--parts febrl,population,scale] [--persons 100000]
                             [--index-records 1000000] [--import-records 1000000]

Needs the bench extra: pip install -e '.[bench]' (splink, recordlinkage).
PostgreSQL: a scratch database `mpi_bench_matching` on MPI_BENCH_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from jellyfish import jaro_winkler_similarity, levenshtein_distance  # noqa: E402
from scratch import database_url  # noqa: E402

from adapters.evaluation.population import source_record  # noqa: E402
from mpi.matching.training import (  # noqa: E402
    estimate_m_by_rule,
    level_frequencies,
    match_share,
)

MISSING, EXACT, CLOSE, MID, FAR = "missing", "exact", "close", "mid", "far"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------
# 1. FEBRL
# --------------------------------------------------------------------------------------------

FEBRL_LEVELS: dict[str, tuple[str, ...]] = {
    "given_name": (EXACT, CLOSE, MID, FAR),
    "surname": (EXACT, CLOSE, MID, FAR),
    "date_of_birth": (EXACT, CLOSE, FAR),
    "suburb": (EXACT, CLOSE, FAR),
    "postcode": (EXACT, CLOSE, FAR),
    "address_1": (EXACT, CLOSE, FAR),
    "address_2": (EXACT, CLOSE, FAR),
    "street_number": (EXACT, FAR),
    "state": (EXACT, FAR),
}
FEBRL_FIELDS = tuple(FEBRL_LEVELS)
# Blocking rules (used by both engines) and the fields each makes agree.
FEBRL_RULES: dict[str, tuple[str, ...]] = {
    "dob": ("date_of_birth",),
    "names": ("given_name", "surname"),
    "postcode_number": ("postcode", "street_number"),
    "suburb_surname": ("suburb", "surname"),
    "given_suburb": ("given_name", "suburb"),
    "given_postcode": ("given_name", "postcode"),
    "street": ("address_1",),
}


def _name_level(a: str, b: str) -> str:
    if not a or not b:
        return MISSING
    if a == b:
        return EXACT
    similarity = jaro_winkler_similarity(a, b)
    if similarity >= 0.92:
        return CLOSE
    if similarity >= 0.80:
        return MID
    return FAR


def _text_level(a: str, b: str, close: float = 0.9) -> str:
    if not a or not b:
        return MISSING
    if a == b:
        return EXACT
    return CLOSE if jaro_winkler_similarity(a, b) >= close else FAR


def _edit_level(a: str, b: str) -> str:
    if not a or not b:
        return MISSING
    if a == b:
        return EXACT
    return CLOSE if levenshtein_distance(a, b) <= 1 else FAR


def _date_level(a: str, b: str) -> str:
    if not a or not b:
        return MISSING
    if a == b:
        return EXACT
    if len(a) == len(b) == 8 and a[:4] == b[:4] and a[4:6] == b[6:8] and a[6:8] == b[4:6]:
        return CLOSE  # day and month swapped
    return CLOSE if levenshtein_distance(a, b) <= 1 else FAR


def _exact_level(a: str, b: str) -> str:
    if not a or not b:
        return MISSING
    return EXACT if a == b else FAR


def febrl_pattern(a: dict[str, str], b: dict[str, str]) -> tuple[str, ...]:
    return (
        _name_level(a["given_name"], b["given_name"]),
        _name_level(a["surname"], b["surname"]),
        _date_level(a["date_of_birth"], b["date_of_birth"]),
        _text_level(a["suburb"], b["suburb"]),
        _edit_level(a["postcode"], b["postcode"]),
        _text_level(a["address_1"], b["address_1"]),
        _text_level(a["address_2"], b["address_2"]),
        _exact_level(a["street_number"], b["street_number"]),
        _exact_level(a["state"], b["state"]),
    )


def _febrl_records(frame: Any) -> list[dict[str, str]]:
    records = []
    for rec_id, row in frame.iterrows():
        record = {"rec_id": str(rec_id)}
        for name in FEBRL_FIELDS:
            value = row[name]
            record[name] = "" if value is None or (isinstance(value, float) and math.isnan(value)) \
                else str(value).strip().lower()
        records.append(record)
    return records


def _blocked_pairs(records: list[dict[str, str]], link_sides: list[int] | None
                   ) -> dict[str, set[tuple[int, int]]]:
    result: dict[str, set[tuple[int, int]]] = {}
    for rule, fields in FEBRL_RULES.items():
        blocks: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for index, record in enumerate(records):
            key = tuple(record[f] for f in fields)
            if all(key):
                blocks[key].append(index)
        pairs: set[tuple[int, int]] = set()
        for members in blocks.values():
            for a, b in combinations(members, 2):
                if link_sides is None or link_sides[a] != link_sides[b]:
                    pairs.add((a, b))
        result[rule] = pairs
    return result


def ours(records: list[dict[str, str]], link_sides: list[int] | None,
         seed: int = 1) -> tuple[set[tuple[str, str]], float]:
    """Our estimation and scoring on FEBRL; returns the predicted pairs (rec ids)."""
    started = time.perf_counter()
    rng = random.Random(seed)
    indexes = range(len(records))
    random_pairs = []
    while len(random_pairs) < 200_000:
        a, b = rng.sample(indexes, 2)
        if link_sides is None or link_sides[a] != link_sides[b]:
            random_pairs.append((a, b))
    u = level_frequencies((febrl_pattern(records[a], records[b]) for a, b in random_pairs),
                          FEBRL_FIELDS, FEBRL_LEVELS)
    by_rule = _blocked_pairs(records, link_sides)
    patterns = {pair: febrl_pattern(records[pair[0]], records[pair[1]])
                for pair in set().union(*by_rule.values())}
    start = {name: _start_m(levels) for name, levels in FEBRL_LEVELS.items()}
    rules = {rule: (frozenset(FEBRL_RULES[rule]), Counter(patterns[p] for p in pairs))
             for rule, pairs in by_rule.items()}
    m = estimate_m_by_rule(rules, FEBRL_FIELDS, FEBRL_LEVELS, u, start)
    matches = match_share(Counter(patterns.values()), FEBRL_FIELDS, m, u) * len(patterns)
    if link_sides is None:
        every_pair = len(records) * (len(records) - 1) / 2
    else:
        left = sum(1 for side in link_sides if side == 0)
        every_pair = left * (len(records) - left)
    prior = matches / every_pair  # two records drawn at random match (as splink's lambda)
    # Term frequencies: agreeing on a common name is weaker evidence.
    frequency = {
        name: {v: n / len(records) for v, n in Counter(r[name] for r in records if r[name]).items()}
        for name in ("given_name", "surname")
    }
    prior_bits = math.log2(prior / (1 - prior))
    predicted: set[tuple[str, str]] = set()
    for (a, b), pattern in patterns.items():
        bits = prior_bits
        for name, level in zip(FEBRL_FIELDS, pattern, strict=True):
            if level == MISSING:
                continue
            u_level = u[name][level]
            if level == EXACT and name in frequency:
                u_level = max(u_level, frequency[name].get(records[a][name], 0.0))
            bits += max(-10.0, min(16.0, math.log2(max(m[name][level], 1e-6) / max(u_level, 1e-6))))
        if bits >= 0:  # probability >= 0.5
            predicted.add(tuple(sorted((records[a]["rec_id"], records[b]["rec_id"]))))
    return predicted, time.perf_counter() - started


def _start_m(levels: Sequence[str]) -> dict[str, float]:
    """A neutral starting point for EM: most matches agree, few disagree."""
    shares = [0.9 * (0.1 ** i) for i in range(len(levels))]
    total = sum(shares)
    return {level: share / total for level, share in zip(levels, shares, strict=True)}


def splink(frames: list[Any], link: bool) -> tuple[set[tuple[str, str]], float]:
    """Splink 5 on DuckDB, unsupervised, with comparable comparisons and the same blocking."""
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    logging.disable(logging.WARNING)
    started = time.perf_counter()
    db_api = DuckDBAPI()
    prepared = []
    for number, frame in enumerate(frames):
        df = frame.reset_index().rename(columns={"rec_id": "unique_id"}).drop(columns=["soc_sec_id"])
        for column in df.columns:
            df[column] = df[column].fillna("").astype(str).str.strip().str.lower()
            df.loc[df[column] == "", column] = None
        prepared.append(db_api.register(df, dataset_display_name=f"febrl_{number}"))
    settings = SettingsCreator(
        link_type="link_only" if link else "dedupe_only",
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.JaroWinklerAtThresholds("suburb", [0.9]),
            cl.LevenshteinAtThresholds("postcode", [1]),
            cl.JaroWinklerAtThresholds("address_1", [0.9]),
            cl.JaroWinklerAtThresholds("address_2", [0.9]),
            cl.ExactMatch("street_number"),
            cl.ExactMatch("state"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on(*fields) for fields in FEBRL_RULES.values()
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(prepared if link else prepared[0], settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "surname", "date_of_birth")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    for fields in (("date_of_birth",), ("given_name", "surname")):
        linker.training.estimate_parameters_using_expectation_maximisation(block_on(*fields))
    predictions = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
    pairs = {tuple(sorted((str(left), str(right)))) for left, right in
             zip(predictions["unique_id_l"], predictions["unique_id_r"], strict=True)}
    return pairs, time.perf_counter() - started


def _splink_frame(frame: Any) -> Any:
    """A FEBRL frame as Splink's FEBRL tutorials prepare it (dates and postcodes as trimmed
    strings), the social security number left out."""
    df = frame.reset_index().drop(columns=["soc_sec_id"])
    for column in df.columns:
        df[column] = df[column].fillna("").astype(str).str.strip()
        df.loc[df[column] == "", column] = None
    return df


def splink_tutorial(frames: list[Any], link: bool) -> tuple[set[tuple[str, str]], float]:
    """Splink 5 on DuckDB configured as its own FEBRL4 (detailed model) and FEBRL3 tutorials
    configure it, less what needs the social security number (its blocking rule, comparison
    and deterministic rule); predictions at match probability >= 0.5 like the others."""
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    logging.disable(logging.WARNING)
    started = time.perf_counter()
    db_api = DuckDBAPI()
    prepared = [db_api.register(_splink_frame(frame), dataset_display_name=f"febrl_{number}")
                for number, frame in enumerate(frames)]
    dob = cl.DateOfBirthComparison("date_of_birth", input_is_string=True,
                                   datetime_format="%Y%m%d", invalid_dates_as_null=True)
    if link:  # FEBRL4 tutorial, detailed model
        blocking = [block_on("given_name", "surname"),
                    "l.given_name = r.surname and l.surname = r.given_name",
                    block_on("date_of_birth"), block_on("state", "address_1"),
                    block_on("street_number", "address_1"), block_on("postcode")]
        comparisons = [
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            dob,
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(
                term_frequency_adjustments=True),
        ]
        deterministic = [block_on("given_name", "surname", "date_of_birth")]
        recall, em_rules = 0.8, [block_on("date_of_birth"), block_on("postcode")]
    else:  # FEBRL3 tutorial
        blocking = [block_on("given_name"), block_on("surname"), block_on("date_of_birth"),
                    block_on("postcode")]
        comparisons = [
            cl.NameComparison("given_name"), cl.NameComparison("surname"), dob,
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ]
        deterministic = [block_on("given_name", "surname", "date_of_birth"),
                         "l.given_name = r.surname and l.surname = r.given_name "
                         "and l.date_of_birth = r.date_of_birth"]
        recall, em_rules = 0.9, [block_on("date_of_birth"), block_on("postcode")]
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="link_only" if link else "dedupe_only",
        blocking_rules_to_generate_predictions=blocking,
        comparisons=comparisons,
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(prepared if link else prepared[0], settings)
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=recall)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
    for rule in em_rules:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=link)
    predictions = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
    pairs = {tuple(sorted((str(left), str(right)))) for left, right in
             zip(predictions["rec_id_l"], predictions["rec_id_r"], strict=True)}
    return pairs, time.perf_counter() - started


def ecm(frames: list[Any], link: bool) -> tuple[set[tuple[str, str]], float]:
    """recordlinkage's ECM classifier (unsupervised, binary features) on candidate pairs of
    its own blocking (the union of blocks on given name, surname, birth date and postcode),
    with the comparisons of its FEBRL examples, the social security number left out."""
    import pandas as pd
    import recordlinkage

    started = time.perf_counter()
    cleaned = []
    for frame in frames:
        df = frame.drop(columns=["soc_sec_id"]).copy()
        for column in df.columns:
            df[column] = df[column].fillna("").astype(str).str.strip()
        cleaned.append(df)
    indexer = recordlinkage.Index()
    for column in ("given_name", "surname", "date_of_birth", "postcode"):
        indexer.block(column)
    candidates = indexer.index(*cleaned)
    compare = recordlinkage.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85,
                   label="given_name")
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    compare.exact("date_of_birth", "date_of_birth", label="date_of_birth")
    compare.exact("suburb", "suburb", label="suburb")
    compare.exact("state", "state", label="state")
    compare.string("address_1", "address_1", method="levenshtein", threshold=0.85,
                   label="address_1")
    compare.exact("street_number", "street_number", label="street_number")
    compare.exact("postcode", "postcode", label="postcode")
    features = compare.compute(candidates, *cleaned)
    classifier = recordlinkage.ECMClassifier(binarize=None)
    matches: pd.MultiIndex = classifier.fit_predict(features.astype(int))
    pairs = {tuple(sorted((str(left), str(right)))) for left, right in matches}
    return pairs, time.perf_counter() - started


def _scores(predicted: set[tuple[str, str]], truth: set[tuple[str, str]]) -> str:
    correct = len(predicted & truth)
    precision = correct / len(predicted) if predicted else 1.0
    recall = correct / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f"precision {precision:.4f}  recall {recall:.4f}  F1 {f1:.4f}"


def febrl() -> None:
    import recordlinkage.datasets as datasets

    print("FEBRL (social security number left out), pairwise at match probability >= 0.5")
    a, b, links4 = datasets.load_febrl4(return_links=True)
    truth4 = {tuple(sorted(pair)) for pair in links4}
    records = _febrl_records(a) + _febrl_records(b)
    sides = [0] * len(a) + [1] * len(b)
    frame, links3 = datasets.load_febrl3(return_links=True)
    truth3 = {tuple(sorted(pair)) for pair in links3}
    runs = (
        ("FEBRL4 link ", "ours", truth4, lambda: ours(records, sides)),
        ("FEBRL4 link ", "splink (our rules)", truth4, lambda: splink([a, b], link=True)),
        ("FEBRL4 link ", "splink (tutorial)", truth4, lambda: splink_tutorial([a, b], True)),
        ("FEBRL4 link ", "recordlinkage ECM", truth4, lambda: ecm([a, b], link=True)),
        ("FEBRL3 dedup", "ours", truth3, lambda: ours(_febrl_records(frame), None)),
        ("FEBRL3 dedup", "splink (our rules)", truth3, lambda: splink([frame], link=False)),
        ("FEBRL3 dedup", "splink (tutorial)", truth3, lambda: splink_tutorial([frame], False)),
        ("FEBRL3 dedup", "recordlinkage ECM", truth3, lambda: ecm([frame], link=False)),
    )
    for data, engine, truth, run in runs:
        predicted, seconds = run()
        print(f"  {data}  {engine:<19} {_scores(predicted, truth)}  ({seconds:.1f} s)")


# --------------------------------------------------------------------------------------------
# 2. The synthetic population through the feed
# --------------------------------------------------------------------------------------------

def population(persons: int) -> None:
    from adapters.evaluation import evaluate

    print(f"synthetic population, {persons} persons, replayed as ADT^A28 through the feed "
          "(SQLite)")
    started = time.perf_counter()
    report = evaluate(persons, seed=2026)
    for line in report.lines():
        print("  " + line)
    print(f"  ({time.perf_counter() - started:.0f} s in all, peak memory {peak_mb():.0f} MB)")


# --------------------------------------------------------------------------------------------
# 3. Scale: import rate, then matching latency against a large index (PostgreSQL)
# --------------------------------------------------------------------------------------------

def _bulk_load(container: Any, rows: Sequence[Any], batch: int = 5000) -> float:
    """Load rows as records, each of its true person, with plain multi-row INSERTs (the index
    the latency is measured against; not the import path). Returns seconds."""
    from sqlalchemy import insert, text

    from adapters.sql.repositories.records import _record_values
    from adapters.sql.tables import links, persons, source_records
    from mpi.model import LinkMethod

    started = time.perf_counter()
    person_ids: dict[str, int] = {}
    now = container.clock.now()
    with container.engine.begin() as connection:
        for offset in range(0, len(rows), batch):
            chunk = rows[offset:offset + batch]
            person_rows, record_rows, link_rows = [], [], []
            for number, row in enumerate(chunk, start=offset + 1):
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
        for table in ("persons", "source_records"):
            connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
        connection.execute(text("ANALYZE"))
    return time.perf_counter() - started


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {at(0.50):.2f} ms  p95 {at(0.95):.2f} ms  p99 {at(0.99):.2f} ms"


def scale(records: int, import_records: int) -> None:
    from adapters.bootstrap import bootstrap
    from adapters.bulk_import import ImportOptions, import_file
    from adapters.evaluation.population import generate_population, write_csv
    from adapters.settings import Settings

    persons = max(1, int(records / 1.5))  # the generator makes about 1.5 records a person
    print(f"scale (PostgreSQL): import of {import_records} records, then matching latency with "
          f"{records} records in the index")
    with tempfile.TemporaryDirectory(prefix="mpi-bench-") as folder:
        # mpi import: the real path (use case, matching, history), batched.
        url = database_url("postgresql", Path(folder), "mpi_bench_matching")
        container = bootstrap(Settings(data_dir=Path(folder), database_url=url, workers=0),
                              migrate=True)
        rows = generate_population(max(1, int(import_records / 1.5)), seed=31)
        path = Path(folder) / "extract.csv"
        write_csv(rows, path)
        report = import_file(path, registry=container.registry, identity=container.identity,
                             uow_factory=container.uow_factory, options=ImportOptions())
        print(f"  mpi import: {report.imported} records in {report.seconds:.1f} s, "
              f"{report.rate:.0f} records/s (1,000,000 records would take "
              f"{1_000_000 / report.rate / 60:.0f} min)")
        container.close()

        url = database_url("postgresql", Path(folder), "mpi_bench_matching")
        container = bootstrap(Settings(data_dir=Path(folder), database_url=url, workers=0),
                              migrate=True)
        rows = generate_population(persons, seed=32)
        seconds = _bulk_load(container, rows)
        print(f"  index: {len(rows)} records of {persons} persons loaded in {seconds:.0f} s")
        fresh = generate_population(2000, seed=33)[:2000]
        rng = random.Random(5)
        latencies, floor, decisions = [], [], Counter()
        with container.uow_factory(read_only=True) as uow:
            for row in fresh[:50]:  # warm the caches and the prepared statements
                container.matcher.match(uow, source_record(row))
            for row in fresh:
                record = source_record(row)
                started = time.perf_counter()
                decision = container.matcher.match(uow, record)
                latencies.append(time.perf_counter() - started)
                decisions[decision.method.value if decision.person_id else
                          ("review" if decision.review else "new")] += 1
                started = time.perf_counter()
                uow.records.get(rng.randint(1, len(rows)))
                floor.append(time.perf_counter() - started)
        print(f"  matching one new record: {_percentiles(latencies)}  "
              f"({len(latencies) / sum(latencies):.0f} records/s on one connection; "
              f"decisions {dict(decisions)})")
        print(f"  floor, one record read by primary key: {_percentiles(floor)}")
        print(f"  peak memory of the bench process {peak_mb():.0f} MB")
        container.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="febrl,population,scale")
    parser.add_argument("--persons", type=int, default=100_000,
                        help="synthetic population size for the accuracy part")
    parser.add_argument("--index-records", type=int, default=1_000_000,
                        help="records in the index the matching latency is measured against")
    parser.add_argument("--import-records", type=int, default=1_000_000,
                        help="records loaded by mpi import for its rate")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "febrl" in parts:
        febrl()
    if "population" in parts:
        population(args.persons)
    if "scale" in parts:
        scale(args.index_records, args.import_records)


if __name__ == "__main__":
    main()
