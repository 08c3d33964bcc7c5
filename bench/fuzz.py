"""The long fuzzing run: at least 10,000 generated inputs per target (tests/fuzz/targets.py)
against the real service on loopback, SQLite by default (``--database-url`` for PostgreSQL).

Prints, per target, the inputs tried, the failures and the time, and the peak memory of the
process (the service runs in it). Every failing input (shrunk by hypothesis) is kept under
tests/fuzz/corpus/<target>/, which the suite replays: commit it with the fix.

    python bench/fuzz.py                       # 10,000 inputs per target
    python bench/fuzz.py --examples 2000 --target fhir --target mllp
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz import targets
from tests.service import RunningService, start_service

_controls = itertools.count(1)


def campaign(service: RunningService, work: Path) -> dict[str, tuple[Any, Callable[[Any], None],
                                                                   Callable[[Any], bytes]]]:
    """Each target: its strategy, its check, and how a failing input is kept as bytes."""
    writer = targets.Bearer(service, "system/ImagingStudy.c", "CHRU")
    reader = targets.Bearer(service, "system/*.rs", "CHRU")
    scu = targets.StoreScu(service)
    same: Callable[[Any], bytes] = bytes
    return {
        "er7": (targets.hl7_inputs(), targets.check_er7, same),
        "framing": (targets.hl7_inputs(), targets.check_framing, same),
        "hl7-application": (targets.hl7_inputs(),
                            lambda d: targets.check_hl7_application(service, d), same),
        "mllp": (targets.hl7_inputs(),
                 lambda d: targets.check_mllp(service, d, f"LONG{next(_controls):08d}"), same),
        "dicom-cstore": (targets.dicom_inputs(),
                         lambda d: targets.check_cstore(service, scu, d, work), same),
        "stow-rs": (targets.dicom_inputs(), lambda d: targets.check_stow(service, writer, d),
                    same),
        "fhir": (targets.fhir_inputs(), lambda r: targets.check_fhir(service, reader, r),
                 targets.fhir_request_bytes),
    }


def run_target(strategy: st.SearchStrategy[Any], check: Callable[[Any], None],
               as_bytes: Callable[[Any], bytes], name: str, examples: int
               ) -> tuple[int, list[str], float]:
    """Run until ``examples`` inputs were tried; a failure is kept and the run goes on with
    another seed. Returns the inputs tried, the failures (what broke), the seconds."""
    tried = 0
    failures: list[str] = []
    started = time.perf_counter()
    failing: list[Any] = []  # the input that broke the check last (shrunk, in the end)
    for attempt in itertools.count():
        if tried >= examples or len(failures) >= 5:
            break
        failing.clear()

        @seed(attempt)
        @settings(max_examples=examples - tried, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def fuzz(value: Any) -> None:
            nonlocal tried
            tried += 1
            if tried % 1000 == 0:
                print(f"    {name}: {tried} inputs, {len(failures)} failures, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
            try:
                check(value)
            except Exception:
                failing[:] = [value]
                raise

        try:
            fuzz()
        except Exception as exc:  # kept, reported, and the campaign goes on
            if not failing:
                raise
            path = targets.keep(name, as_bytes(failing[0]))
            failures.append(f"{type(exc).__name__}: {str(exc)[:200]} (kept as "
                            f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path})")
        else:
            break
    return tried, failures, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--target", action="append", choices=targets.TARGETS)
    parser.add_argument("--database-url", default=None)
    arguments = parser.parse_args()
    chosen = arguments.target or list(targets.TARGETS)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        url = arguments.database_url or f"sqlite:///{work / 'fuzz.sqlite3'}"
        service = start_service(url, work / "data")
        try:
            plan = campaign(service, work)
            print(f"fuzzing on {url.split(':')[0]}, {arguments.examples} inputs per target")
            print(f"{'target':<16} {'inputs':>8} {'failures':>8} {'seconds':>8} {'inputs/s':>9}")
            total_failures = 0
            for name in chosen:
                strategy, check, as_bytes = plan[name]
                tried, failures, seconds = run_target(strategy, check, as_bytes, name,
                                                      arguments.examples)
                total_failures += len(failures)
                print(f"{name:<16} {tried:>8} {len(failures):>8} {seconds:>8.1f} "
                      f"{tried / seconds if seconds else 0:>9.0f}", flush=True)
                for failure in failures:
                    print(f"    {failure}")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak memory of the process (service included): {peak:.0f} MB")
            print(f"failures: {total_failures}")
        finally:
            service.stop()


if __name__ == "__main__":
    main()
