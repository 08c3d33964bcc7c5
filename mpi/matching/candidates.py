"""The persons a record could be, best first, each graded as ``$match`` (ITI-119) reports it.

Grades: ``certain`` for the person holding the record's qualified INS, and for a probability
at or above the automatic-link threshold with no veto applying (what the feed would link, the
ambiguity with a runner-up aside); ``probable`` at or above the review threshold; ``possible``
for the others at or above the minimum probability asked for. Persons holding another
qualified INS are never proposed. Reads only: the record need not be stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mpi.authorities import AuthorityRegistry
from mpi.matching.engine import ProbabilisticMatcher, RankedPerson
from mpi.matching.model import MatchModel
from mpi.model import SourceRecord
from mpi.ports import UnitOfWork
from mpi.queries import resolve_person

__all__ = ["MatchGrade", "GradedCandidate", "grade_of", "graded_candidates"]


class MatchGrade(StrEnum):
    CERTAIN = "certain"
    PROBABLE = "probable"
    POSSIBLE = "possible"


@dataclass(frozen=True)
class GradedCandidate:
    """A person the record could be: its score (1.0 for the holder of the record's qualified
    INS, else the match probability), grade and evidence."""

    person_id: int
    score: float
    grade: MatchGrade
    evidence: dict[str, Any]


def grade_of(model: MatchModel, ranked: RankedPerson) -> MatchGrade:
    """The grade of a ranked person under the model's thresholds."""
    if ranked.probability >= model.auto_link_probability and not ranked.vetoed:
        return MatchGrade.CERTAIN
    if ranked.probability >= model.review_probability:
        return MatchGrade.PROBABLE
    return MatchGrade.POSSIBLE


def graded_candidates(uow: UnitOfWork, registry: AuthorityRegistry,
                      matcher: ProbabilisticMatcher, record: SourceRecord, count: int,
                      minimum_probability: float, *, only_certain: bool = False
                      ) -> list[GradedCandidate]:
    """At most ``count`` candidates, best first: the holder of the record's qualified INS,
    then the persons the matcher ranks at or above ``minimum_probability``. With
    ``only_certain``, the certain candidate alone, or nobody when there is none or several
    (IHE's rule for onlyCertainMatches). Raises UnknownAuthorityError when the record's INS
    is of an authority the registry does not know."""
    found: list[GradedCandidate] = []
    if record.qualified_ins is not None:
        holder = resolve_person(uow, registry, record.qualified_ins)
        if holder is not None and holder.id is not None:
            found.append(GradedCandidate(holder.id, 1.0, MatchGrade.CERTAIN, {"ins": True}))
    # One more from the ranking when the holder is found: the holder may be ranked too.
    for ranked in matcher.rank(uow, record, minimum_probability, count + len(found)):
        if any(candidate.person_id == ranked.person_id for candidate in found):
            continue
        found.append(GradedCandidate(ranked.person_id, ranked.probability,
                                     grade_of(matcher.model, ranked), ranked.evidence))
    if only_certain:
        # Judged on every candidate found, before the count cuts the list.
        certain = [candidate for candidate in found if candidate.grade is MatchGrade.CERTAIN]
        found = certain if len(certain) == 1 else []
    return found[:count]
