"""The probabilistic matcher: candidates by blocking keys, Fellegi-Sunter scores per person,
and the decision (automatic link, review, or a new person).

Only strong and unambiguous evidence links automatically: a false merge shows one patient's
images in another's record, a missed link is a duplicate the review queue still catches. Never
linked automatically, at most proposed for review: look-alike twins (same family name and birth
date, different first given names), records whose birth dates differ beyond a typing error
(a mother and her newborn share a name, an address and a phone) or whose birth date is only
known to the year (the 01/01 convention matches anybody born that year), and a record with a person
that already has a record of the same establishment (two identifiers of one source are two patients until that source
merges them with an A40, or identity vigilance decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mpi.identity import MatchDecision, ReviewCandidate
from jellyfish import jaro_winkler_similarity

from mpi.matching.comparisons import CLOSE, EXACT, FAR, NAME_SIMILARITY, compare
from mpi.matching.model import DEFAULT_MODEL, MatchModel, Score
from mpi.matching.profile import MatchProfile, blocking_keys, profile_of
from mpi.model import LinkMethod, SourceRecord
from mpi.normalize import birth_date_relation, given_names_agree_any_order
from mpi.ports import UnitOfWork

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


@dataclass
class _PersonEvidence:
    person_id: int
    record_id: int
    score: Score
    twins: bool
    same_source: bool  # the person already has a record of the same establishment
    other_birth_date: bool  # the birth dates differ beyond a typing error
    partial_birth_date: bool  # one birth date is only known to the year or month (01/01)


def looks_like_twins(levels: dict[str, str], a: MatchProfile, b: MatchProfile) -> bool:
    """Same family name and birth date, different first given names (not a typo, not the same
    names in another order): twins until a person says otherwise; never linked automatically.
    Louise against Yasmine Louise is twins too: sisters often carry each other's names."""
    if levels["family_name"] != EXACT or levels["birth_date"] != EXACT:
        return False
    if levels["given_name"] == FAR:
        return True
    return (
        levels["given_name"] == CLOSE
        and bool(a.first_given) and bool(b.first_given)
        and not given_names_agree_any_order(a.given_names, b.given_names)
        and jaro_winkler_similarity(a.first_given, b.first_given) < NAME_SIMILARITY
    )


def _year_only(levels: dict[str, str], a: MatchProfile, b: MatchProfile) -> bool:
    """One birth date is known only to the year or month (01/01): a close level, told apart
    from a typo or a swap only when the dates are close at all."""
    return (levels["birth_date"] == CLOSE
            and birth_date_relation(a.birth_date, b.birth_date) == "unknown_day")


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
        return [
            RankedPerson(e.person_id, e.record_id, e.score.probability, e.score.weight,
                         {**e.score.evidence(), "twins": e.twins,
                          "other_birth_date": e.other_birth_date,
                          "partial_birth_date": e.partial_birth_date,
                          # what would keep the feed from linking it automatically
                          "vetoed": e.twins or e.other_birth_date or e.partial_birth_date})
            for e in ranked[:limit]
        ]

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
                persons[person_id] = _PersonEvidence(person_id, candidate.id, score,
                                                     looks_like_twins(levels, profile, other),
                                                     person_id in same_source,
                                                     levels["birth_date"] == FAR,
                                                     _year_only(levels, profile, other))
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
            evidence = {"reason": "no candidate at or above the review threshold",
                        "oversized_blocks": oversized}
            return MatchDecision(None, LinkMethod.NEW, evidence=evidence)
        best = ranked[0]
        evidence = best.score.evidence()
        evidence.update(candidate_record=best.record_id, oversized_blocks=oversized,
                        twins=best.twins, same_source=best.same_source,
                        other_birth_date=best.other_birth_date,
                        partial_birth_date=best.partial_birth_date)
        runner_up = ranked[1] if len(ranked) > 1 else None
        clear = runner_up is None or (
            runner_up.score.probability < model.review_probability
            or best.score.weight - runner_up.score.weight >= model.ambiguity_margin_bits
        )
        vetoed = (best.twins or best.same_source or best.other_birth_date
                  or best.partial_birth_date)
        if best.score.probability >= model.auto_link_probability and clear and not vetoed:
            return MatchDecision(best.person_id, LinkMethod.AUTO, best.score.probability,
                                 evidence)
        reviews = tuple(
            ReviewCandidate(e.person_id, e.record_id, e.score.probability, {
                **e.score.evidence(), "twins": e.twins, "same_source": e.same_source,
                "other_birth_date": e.other_birth_date,
                "partial_birth_date": e.partial_birth_date, "oversized_blocks": oversized,
            })
            for e in ranked[:MAX_REVIEW_CANDIDATES]
            if e.score.probability >= model.review_probability
        )
        evidence["reason"] = "review" if reviews else "below the review threshold"
        return MatchDecision(None, LinkMethod.NEW, best.score.probability, evidence, reviews)

