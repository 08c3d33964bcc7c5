"""The probabilistic matcher: candidates by blocking keys, Fellegi-Sunter scores per person,
and the decision (automatic link, review, or a new person).

Only strong and unambiguous evidence links automatically: a clear best candidate above the
automatic-link threshold for which no veto (:mod:`mpi.matching.vetoes`) holds; otherwise the
candidates above the review threshold are proposed for review.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mpi.identity import MatchDecision, ReviewCandidate
from mpi.matching.comparisons import compare
from mpi.matching.model import DEFAULT_MODEL, MatchModel, Score
from mpi.matching.profile import MatchProfile, blocking_keys, profile_of
from mpi.matching.vetoes import Candidacy, looks_like_twins, vetoes_holding, without_source
from mpi.model import LinkMethod, SourceRecord
from mpi.ports import UnitOfWork

# looks_like_twins is declared with the other vetoes; it stays importable from here.
__all__ = ["ProbabilisticMatcher", "RankedPerson", "DEFAULT_BLOCK_CAP", "looks_like_twins"]

DEFAULT_BLOCK_CAP = 500  # a block larger than this (a very common name and year) is skipped
MAX_REVIEW_CANDIDATES = 3


@dataclass(frozen=True)
class RankedPerson:
    """A candidate person for a record, as ``rank`` reports it."""

    person_id: int
    record_id: int  # the person's record that scored best
    probability: float
    weight: float  # log2 likelihood ratio
    evidence: dict[str, Any]
    vetoed: bool  # a veto that applies without a source holds: the feed would not link it


@dataclass
class _PersonEvidence:
    person_id: int
    record_id: int
    score: Score
    vetoes: dict[str, bool]  # each veto's flag, for the person's best-scoring record


class ProbabilisticMatcher:
    """Implements :class:`mpi.identity.Matcher` with a Fellegi-Sunter model."""

    def __init__(self, national_authorities: frozenset[str], model: MatchModel = DEFAULT_MODEL,
                 block_cap: int = DEFAULT_BLOCK_CAP) -> None:
        self.national_authorities = national_authorities
        self.model = model
        self.block_cap = block_cap

    def match(self, uow: UnitOfWork, record: SourceRecord) -> MatchDecision:
        profile = profile_of(record)
        if profile.fictitious:
            return MatchDecision(None, LinkMethod.NEW, evidence={"reason": "fictitious identity"})
        keys = {name: value for name, value in blocking_keys(profile).items() if value}
        if not keys:
            return MatchDecision(None, LinkMethod.NEW, evidence={"reason": "no blocking key"})
        ranked, oversized = self._ranked(uow, record, profile, keys, self.model.review_probability)
        return self._decide(ranked, oversized)

    def rank(self, uow: UnitOfWork, record: SourceRecord, minimum_probability: float = 0.0,
             limit: int = 10) -> list[RankedPerson]:
        """The persons a record (stored or not: ``record.id`` may be None) could belong to,
        best first, with their score and per-field evidence. Reads only: for ``$match``.

        Fictitious identities rank nobody; persons holding another qualified INS are left out.
        """
        profile = profile_of(record)
        keys = {name: value for name, value in blocking_keys(profile).items() if value}
        if profile.fictitious or not keys:
            return []
        ranked, _ = self._ranked(uow, record, profile, keys, minimum_probability)
        ranked_persons = []
        for e in ranked[:limit]:
            # The record has no source: the vetoes that need one do not apply.
            vetoes = without_source(e.vetoes)
            vetoed = any(vetoes.values())
            ranked_persons.append(RankedPerson(
                e.person_id, e.record_id, e.score.probability, e.score.weight,
                {**e.score.evidence(), **vetoes, "vetoed": vetoed}, vetoed))
        return ranked_persons

    def _ranked(self, uow: UnitOfWork, record: SourceRecord, profile: MatchProfile,
                keys: dict[str, str], minimum_probability: float
                ) -> tuple[list[_PersonEvidence], list[str]]:
        candidates, oversized = uow.records.candidates(keys, self.block_cap, record.id)
        persons = self._best_per_person(record, profile, candidates)
        # Only persons that could be linked or proposed are worth the INS check (a query).
        ranked = [
            evidence for evidence in sorted(persons.values(), key=lambda e: -e.score.weight)
            if evidence.score.probability >= minimum_probability
            and self._may_be(uow, profile, evidence.person_id, self.national_authorities)
        ]
        return ranked, oversized

    def score_pair(self, a: SourceRecord, b: SourceRecord) -> Score:
        """The score of two records (for $match, the review queue and evaluation)."""
        first, second = profile_of(a), profile_of(b)
        return self.model.score(first, compare(first, second))

    def _best_per_person(self, record: SourceRecord, profile: MatchProfile,
                         candidates: list[tuple[SourceRecord, int]]) -> dict[int, _PersonEvidence]:
        persons: dict[int, _PersonEvidence] = {}
        same_source = {
            person_id for candidate, person_id in candidates
            if candidate.identifier.authority == record.identifier.authority
        }
        for candidate, person_id in candidates:
            other = profile_of(candidate)
            if other.fictitious:
                continue
            if profile.ins and other.ins and profile.ins != other.ins:
                continue  # two different qualified INS are two people, whatever the traits
            levels = compare(profile, other)
            score = self.model.score(profile, levels)
            known = persons.get(person_id)
            if known is None or score.weight > known.score.weight:
                assert candidate.id is not None
                candidacy = Candidacy(levels, profile, other, person_id in same_source)
                persons[person_id] = _PersonEvidence(person_id, candidate.id, score,
                                                     vetoes_holding(candidacy))
        return persons

    @staticmethod
    def _may_be(uow: UnitOfWork, profile: MatchProfile, person_id: int,
                national: frozenset[str]) -> bool:
        """False when the person holds a qualified INS other than the record's."""
        if not profile.ins:
            return True
        held = {
            identifier.value for identifier in uow.records.identifiers_of(person_id)
            if identifier.authority in national
        }
        return not held or held == {profile.ins}

    def _decide(self, ranked: list[_PersonEvidence], oversized: list[str]) -> MatchDecision:
        model = self.model
        if not ranked:
            return MatchDecision(None, LinkMethod.NEW, evidence={
                "reason": "no candidate at or above the review threshold",
                "oversized_blocks": oversized})
        best = ranked[0]
        evidence: dict[str, Any] = {**best.score.evidence(), "candidate_record": best.record_id,
                                    "oversized_blocks": oversized, **best.vetoes}
        runner_up = ranked[1] if len(ranked) > 1 else None
        clear = runner_up is None or (
            runner_up.score.probability < model.review_probability
            or best.score.weight - runner_up.score.weight >= model.ambiguity_margin_bits
        )
        vetoed = any(best.vetoes.values())
        if best.score.probability >= model.auto_link_probability and clear and not vetoed:
            return MatchDecision(best.person_id, LinkMethod.AUTO, best.score.probability,
                                 evidence)
        reviews = tuple(
            ReviewCandidate(e.person_id, e.record_id, e.score.probability, {
                **e.score.evidence(), **e.vetoes, "oversized_blocks": oversized,
            })
            for e in ranked[:MAX_REVIEW_CANDIDATES]
            if e.score.probability >= model.review_probability
        )
        evidence["reason"] = "review" if reviews else "below the review threshold"
        return MatchDecision(None, LinkMethod.NEW, best.score.probability, evidence, reviews)

