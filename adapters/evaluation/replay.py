"""`mpi evaluate`: the accuracy of the index on the shipped synthetic population.

The population (:mod:`adapters.evaluation.population`, with its ground truth) is replayed as ADT^A28
messages through the real feed path (the HL7 application: journal, parsing, use cases,
matching) into a fresh database; then pairwise precision, recall and F1 of the links, the false
merges (with the worst examples) and the review queue are measured against the truth.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from adapters.bootstrap import bootstrap
from adapters.container import Container
from adapters.evaluation.population import SourceRow, generate_population
from adapters.evaluation.tables import INS_AUTHORITY
from adapters.hl7v2.er7 import Separators, escape
from adapters.hl7v2.replies import cx, segment
from adapters.settings import Settings
from mpi.authorities import AuthorityRegistry
from mpi.model import Identifier, ReviewStatus
from mpi.queries import resolve_person

__all__ = ["CauseCount", "EvaluationReport", "evaluate", "a28_message", "pair_causes",
           "pid_segment"]

SEPARATORS = Separators()


def pid_segment(row: SourceRow, registry: AuthorityRegistry) -> str:
    """The PID of an ADT^A28 for ``row`` (IHE PAM France 2.11), written by the one ER7
    writer: PID-3 IPP (+ INS when qualified), PID-5 birth name (L) and used name (D), PID-7
    birth date, PID-8 sex, PID-11 home address, PID-13 phone, PID-23 birthplace, PID-32
    reliability codes."""
    s = SEPARATORS
    c = s.component
    identifiers = [cx(Identifier(row.authority, row.local_id), registry, s)]
    if row.qualified and row.ins:
        identifiers.append(cx(Identifier(INS_AUTHORITY, row.ins), registry, s))
    first = escape(row.given_names[0], s) if row.given_names else ""
    all_given = " ".join(escape(g, s) for g in row.given_names)
    names = [c.join([escape(row.birth_family_name or "", s), first, all_given, "", "", "",
                     "L"])]
    if row.used_family_name:
        names.append(c.join([escape(row.used_family_name, s), first, "", "", "", "", "D"]))
    address = ""
    if row.street or row.city or row.postcode:
        address = c.join([escape(row.street or "", s), "", escape(row.city or "", s), "",
                          escape(row.postcode or "", s), "FRA", "H"])
    fields = [""] * 33
    fields[0], fields[1] = "PID", "1"
    fields[3] = s.repetition.join(identifiers)
    fields[5] = s.repetition.join(names)
    fields[7] = row.birth_date.strftime("%Y%m%d") if row.birth_date else ""
    fields[8] = escape(row.sex or "", s)
    fields[11] = address
    fields[13] = c.join([escape(row.phone, s), "PRN", "PH"]) if row.phone else ""
    fields[23] = escape(row.birthplace or "", s)
    fields[32] = s.repetition.join(escape(code, s) for code in row.reliability)
    return segment(s, *fields)


def a28_message(row: SourceRow, number: int, registry: AuthorityRegistry) -> bytes:
    """ADT^A28 of ``row``, as the establishment's HIS would send it."""
    s = SEPARATORS
    segments = [
        segment(s, "MSH", s.encoding_characters, "HIS", row.authority, "MPI", "GCS",
                "20261129080000", "", "ADT^A28^ADT_A05", f"EVAL{number:09d}", "P",
                "2.5^FRA^2.11", "", "", "", "", "FRA", "UNICODE UTF-8", "FRE"),
        segment(s, "EVN", "", "20261129080000"),
        pid_segment(row, registry),
        segment(s, "PV1", "1", "N"),
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def _pairs(groups: Iterable[list[int]]) -> set[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    for members in groups:
        pairs.update(combinations(sorted(members), 2))
    return pairs


@dataclass
class EvaluationReport:
    persons: int
    records: int
    seconds: float
    true_pairs: int
    linked_pairs: int
    correct_pairs: int
    review_tasks: int
    recall_with_review: float
    false_merges: list[tuple[SourceRow, SourceRow]] = field(default_factory=list)
    rejected: int = 0
    # Pairs of records of two different establishments: the ones automatic linking may make
    # (two records of one establishment are two patients until it merges them, or a person
    # decides).
    cross_true_pairs: int = 0
    cross_correct_pairs: int = 0
    error_factor: float = 1.0
    # The true pairs by cause (:func:`pair_causes`): how many there are, how many of them
    # were not linked automatically, and how many neither linked nor proposed for review.
    causes: dict[str, CauseCount] = field(default_factory=dict)

    @property
    def cross_recall(self) -> float:
        return self.cross_correct_pairs / self.cross_true_pairs if self.cross_true_pairs else 1.0

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.linked_pairs if self.linked_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def lines(self) -> list[str]:
        share = self.review_tasks / self.records if self.records else 0.0
        factor = f", error factor {self.error_factor:g}" if self.error_factor != 1.0 else ""
        lines = [
            f"population: {self.persons} persons{factor}, {self.records} records "
            f"(replayed through the feed in {self.seconds:.1f} s, "
            f"{self.records / self.seconds:.0f} records/s)",
            f"pairs: {self.true_pairs} true, {self.linked_pairs} linked automatically, "
            f"{self.correct_pairs} of them correct",
            f"precision {self.precision:.5f}  recall {self.recall:.5f}  F1 {self.f1:.5f}",
            f"recall between establishments {self.cross_recall:.5f} "
            f"({self.cross_correct_pairs} of {self.cross_true_pairs} pairs); within one "
            "establishment, duplicates go to review",
            f"false merges: {len(self.false_merges)} pairs",
            f"review queue: {self.review_tasks} tasks ({share:.2%} of records); recall counting "
            f"the review queue {self.recall_with_review:.5f}",
        ]
        if self.rejected:
            lines.append(f"messages not accepted: {self.rejected}")
        for a, b in self.false_merges[:10]:
            lines.append(f"  false merge: {_describe(a)}  <->  {_describe(b)}")
        if self.causes:
            lines.append("true pairs by cause (a pair counts under each of its causes):")
            lines.extend(cause_lines(self.causes))
        return lines


@dataclass
class CauseCount:
    """The true pairs of one cause: all of them, those missed automatically, those missed
    even counting the review queue."""

    pairs: int = 0
    missed: int = 0
    missed_with_review: int = 0


def pair_causes(a: SourceRow, b: SourceRow) -> list[str]:
    """The causes a true pair is counted under: its INS (both, one or neither record
    qualified), whether both records are of one establishment, and the data-entry errors of
    either record (``error:none`` for a pair without any)."""
    qualified = a.qualified + b.qualified
    causes = ["ins:both" if qualified == 2 else "ins:one" if qualified == 1 else "ins:none",
              "same establishment" if a.authority == b.authority else "two establishments"]
    errors = sorted(set(a.errors) | set(b.errors))
    causes.extend(f"error:{kind}" for kind in errors or ["none"])
    return causes


def cause_lines(causes: dict[str, CauseCount]) -> list[str]:
    """The table of the true pairs by cause, the causes most often behind a miss first."""
    lines = [f"  {'cause':<28}{'pairs':>9}{'missed':>9}{'share':>8}{'missed w/ review':>18}"]
    for cause, count in sorted(causes.items(), key=lambda item: (-item[1].missed, item[0])):
        share = count.missed / count.pairs if count.pairs else 0.0
        lines.append(f"  {cause:<28}{count.pairs:>9}{count.missed:>9}{share:>8.1%}"
                     f"{count.missed_with_review:>18}")
    return lines


def _describe(row: SourceRow) -> str:
    given = " ".join(row.given_names)
    return (f"{row.authority}|{row.local_id} {row.birth_family_name} {given} "
            f"{row.birth_date} {row.sex} {row.birthplace} [{row.kind}]")


def evaluate(persons: int, seed: int = 2026, database_url: str | None = None,
             progress: Callable[[int, int], None] | None = None,
             error_factor: float = 1.0) -> EvaluationReport:
    """Generate (every error rate multiplied by ``error_factor``), replay, measure. Uses a
    fresh SQLite database in a temporary folder unless ``database_url`` names an empty
    database."""
    rows = generate_population(persons, seed, error_factor)
    with tempfile.TemporaryDirectory(prefix="mpi-evaluate-") as folder:
        settings = Settings(data_dir=Path(folder), database_url=database_url, workers=0)
        container = bootstrap(settings, migrate=True)
        try:
            report = _run(container, rows, persons, progress)
        finally:
            container.close()
    report.error_factor = error_factor
    return report


def _run(container: Container, rows: list[SourceRow], persons: int,
         progress: Callable[[int, int], None] | None) -> EvaluationReport:
    started = time.perf_counter()
    rejected = 0
    step = max(1, len(rows) // 200)  # a progress bar that moves on small runs too
    for number, row in enumerate(rows):
        reply = container.hl7.handle(a28_message(row, number, container.registry))
        if "MSA|AA|" not in reply.text:
            rejected += 1
        if progress is not None and (number % step == 0 or number == len(rows) - 1):
            progress(number + 1, len(rows))
    seconds = time.perf_counter() - started
    registry = container.registry
    index_of = {(row.authority, row.local_id): i for i, row in enumerate(rows)}
    by_person: dict[int, list[int]] = defaultdict(list)
    record_rows: dict[int, int] = {}
    with container.uow_factory(read_only=True) as uow:
        for i, row in enumerate(rows):
            identifier = Identifier(row.authority, row.local_id)
            person = resolve_person(uow, registry, identifier)
            record = uow.records.by_identifier(identifier)
            if person is not None and person.id is not None:
                by_person[person.id].append(i)
            if record is not None and record.id is not None:
                record_rows[record.id] = i
        tasks, total_tasks = uow.reviews.list(ReviewStatus.OPEN, 0, 10_000_000)
        review_pairs: set[tuple[int, int]] = set()
        for task in tasks:
            mine = record_rows.get(task.record_id)
            if mine is None:
                continue
            for other in uow.records.linked_to(task.person_id):
                theirs = index_of.get((other.identifier.authority, other.identifier.value))
                if theirs is not None and theirs != mine:
                    review_pairs.add((min(mine, theirs), max(mine, theirs)))
    truth_groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        truth_groups[row.person_key].append(i)
    truth = _pairs(truth_groups.values())
    linked = _pairs(by_person.values())
    correct = linked & truth
    wrong = sorted(linked - truth)
    found_with_review = (linked | review_pairs) & truth
    causes: dict[str, CauseCount] = defaultdict(CauseCount)
    for a, b in truth:
        for cause in pair_causes(rows[a], rows[b]):
            count = causes[cause]
            count.pairs += 1
            if (a, b) not in correct:
                count.missed += 1
                if (a, b) not in found_with_review:
                    count.missed_with_review += 1
    return EvaluationReport(
        persons=persons,
        records=len(rows),
        seconds=seconds,
        true_pairs=len(truth),
        linked_pairs=len(linked),
        correct_pairs=len(correct),
        review_tasks=total_tasks,
        recall_with_review=len(found_with_review) / len(truth) if truth else 1.0,
        false_merges=[(rows[a], rows[b]) for a, b in wrong],
        rejected=rejected,
        cross_true_pairs=sum(1 for a, b in truth if rows[a].authority != rows[b].authority),
        cross_correct_pairs=sum(1 for a, b in correct if rows[a].authority != rows[b].authority),
        causes=dict(causes),
    )
