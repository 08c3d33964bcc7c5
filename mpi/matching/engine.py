"""The probabilistic matcher: candidates by blocking keys, Fellegi-Sunter scores per person,
and the decision (automatic link, review, or a new person).

Only strong and unambiguous evidence links automatically: a clear best candidate above the
automatic-link threshold for which no veto (:mod:`mpi.matching.vetoes`) holds, and none of whose
records looks like a twin of the new one; otherwise the candidates above the review threshold
are proposed for review.

Every decision keeps its reasons: per field the level and its weight, the blocking keys that
found the candidate, the runner-up, the model version and its thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mpi.identity import MatchDecision, PairVerdict, ReviewCandidate
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
    candidate: MatchProfile  # the person's best-scoring record


def model_context(model: MatchModel) -> dict[str, Any]:
    """The model a decision was taken with: its version and thresholds (for the evidence)."""
    return {"version": model.version, "auto_link_probability": model.auto_link_probability,
            "review_probability": model.review_probability,
            "ambiguity_margin_bits": model.ambiguity_margin_bits}


def shared_blocking_keys(keys: dict[str, str], candidate: MatchProfile) -> list[str]:
    """The names of the blocking keys the record shares with a candidate: how it was found."""
    theirs = blocking_keys(candidate)
    return [name for name, value in keys.items() if value and theirs.get(name) == value]


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
        # Two records of one person matched at once by two processes would each miss the
        # other among its candidates and found two persons: with its blocking keys locked
        # (until the end of the transaction), the second waits for the first and finds it.
        uow.lock(f"block:{name}:{value}" for name, value in sorted(keys.items()))
        ranked, oversized = self._ranked(uow, record, profile, keys, self.model.review_probability)
        return self._decide(uow, record, profile, keys, ranked, oversized)

    def pair(self, a: SourceRecord, b: SourceRecord) -> PairVerdict:
        """Whether ``a`` would be linked automatically to a person holding ``b`` alone, by the
        rules of :meth:`match` (the same-source veto aside: it is about the person, not the
        pair): for re-examining a link after either record changed."""
        first, second = profile_of(a), profile_of(b)
        if first.fictitious or second.fictitious:
            return PairVerdict(False, False, None, {"reason": "fictitious identity"})
        if first.ins and second.ins:
            if first.ins != second.ins:
                return PairVerdict(False, False, None, {"reason": "different qualified INS"})
            return PairVerdict(True, False, 1.0, {"reason": "equal qualified INS"})
        levels = compare(first, second)
        score = self.model.score(first, levels)
        flags = vetoes_holding(Candidacy(levels, first, second, False))
        flags["same_source"] = False
        links = score.probability >= self.model.auto_link_probability and not any(
            flags.values())
        return PairVerdict(links, flags["twins"], score.probability, {
            **score.evidence(), **flags, "candidate_record": b.id,
            "model": model_context(self.model)})

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
                                                     vetoes_holding(candidacy), other)
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

    def _twin_record(self, uow: UnitOfWork, record: SourceRecord, profile: MatchProfile,
                     person_id: int) -> int | None:
        """A record of the person that looks like a twin of ``record``, if any: checked on
        every record of the person, not only the best-scoring one, so that a record without
        given names (or with a typo) never bridges two twins."""
        for other in uow.records.linked_to(person_id):
            if not other.is_active or other.id == record.id:
                continue
            candidate = profile_of(other)
            if candidate.fictitious:
                continue
            if looks_like_twins(compare(profile, candidate), profile, candidate):
                return other.id
        return None

    def _evidence(self, keys: dict[str, str], e: _PersonEvidence,
                  oversized: list[str]) -> dict[str, Any]:
        return {**e.score.evidence(), **e.vetoes, "candidate_record": e.record_id,
                "blocking_keys": shared_blocking_keys(keys, e.candidate),
                "oversized_blocks": oversized, "model": model_context(self.model)}

    def _decide(self, uow: UnitOfWork, record: SourceRecord, profile: MatchProfile,
                keys: dict[str, str], ranked: list[_PersonEvidence],
                oversized: list[str]) -> MatchDecision:
        model = self.model
        if not ranked:
            return MatchDecision(None, LinkMethod.NEW, evidence={
                "reason": "no candidate at or above the review threshold",
                "oversized_blocks": oversized, "model": model_context(model)})
        best = ranked[0]
        evidence = self._evidence(keys, best, oversized)
        runner_up = ranked[1] if len(ranked) > 1 else None
        if runner_up is not None:
            evidence["runner_up"] = {"person": runner_up.person_id,
                                     "weight": round(runner_up.score.weight, 3),
                                     "probability": round(runner_up.score.probability, 6)}
        clear = runner_up is None or (
            runner_up.score.probability < model.review_probability
            or best.score.weight - runner_up.score.weight >= model.ambiguity_margin_bits
        )
        evidence["ambiguous"] = not clear
        vetoed = any(best.vetoes.values())
        if best.score.probability >= model.auto_link_probability and clear and not vetoed:
            twin = self._twin_record(uow, record, profile, best.person_id)
            if twin is None:
                evidence["reason"] = "automatic link"
                return MatchDecision(best.person_id, LinkMethod.AUTO, best.score.probability,
                                     evidence)
            evidence["twins"] = True
            evidence["twin_record"] = twin
        reviews = []
        for e in ranked[:MAX_REVIEW_CANDIDATES]:
            if e.score.probability < model.review_probability:
                continue
            detail = self._evidence(keys, e, oversized)
            if e is best:
                detail = dict(evidence)
            detail["reason"] = "review"
            reviews.append(ReviewCandidate(e.person_id, e.record_id, e.score.probability,
                                           detail))
        evidence["reason"] = "review" if reviews else "below the review threshold"
        return MatchDecision(None, LinkMethod.NEW, best.score.probability, evidence,
                             tuple(reviews))
