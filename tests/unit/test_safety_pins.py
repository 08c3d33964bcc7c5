"""Unit tests that pin the safety rules each at its own place, so that losing one fails here
and not only in a replay: the matcher leaves out a person holding another qualified INS; an
A40 merge checks that the persons are compatible; two equally good persons are an ambiguity,
never a pick; the thresholds are those decided."""

from __future__ import annotations

import dataclasses
from datetime import date

from mpi.matching.engine import ProbabilisticMatcher
from mpi.matching.model import DEFAULT_MODEL, MatchModel
from mpi.model import Demographics, Identifier, LinkMethod, ReviewKind, SourceRecord
from tests.identity_env import INS_A, INS_B, NATIONAL, STAFF, TRAITS, IdentityEnv


def new_record(authority: str, value: str, ins: Identifier | None = None,
               **traits: object) -> SourceRecord:
    return SourceRecord(Identifier(authority, value), Demographics().apply(traits), ins,
                        ("VALI",) if ins else ("PROV",))


def persons_with_two_qualified_ins(env: IdentityEnv) -> list[int]:
    held: dict[int, set[Identifier]] = {}
    for record in env.store.records.values():
        if record.is_active and record.qualified_ins is not None:
            person = env.store.links[record.id].person_id
            held.setdefault(person, set()).add(record.qualified_ins)
    return [person for person, ins in held.items() if len(ins) > 1]


# -- (a) a person holding another qualified INS is never a candidate ----------------------


def test_the_matcher_leaves_out_a_person_holding_another_qualified_ins() -> None:
    env = IdentityEnv()
    env.register("CHRU", "1", INS_A, **TRAITS)
    env.register("ICL", "2", **TRAITS)  # unqualified: linked to CHRU 1's person by traits
    holder = env.person("CHRU", "1")
    assert env.person("ICL", "2") == holder
    matcher = ProbabilisticMatcher(NATIONAL)
    other = new_record("MRUN", "3", INS_B, **TRAITS)
    with env.factory() as uow:
        # ICL 2 scores best and has no INS of its own; its person holds INS_A all the same.
        decision = matcher.match(uow, other)
        ranked = matcher.rank(uow, other)
    assert decision.person_id is None
    assert all(candidate.person_id != holder for candidate in decision.review)
    assert all(candidate.person_id != holder for candidate in ranked)
    env.register("MRUN", "3", INS_B, **TRAITS)
    assert env.person("MRUN", "3") != holder
    assert persons_with_two_qualified_ins(env) == []


def test_the_service_refuses_a_matcher_s_choice_of_a_person_holding_another_ins() -> None:
    from mpi.identity import MatchDecision, PairVerdict

    class CarelessMatcher:
        """Names the first person it finds, whatever the rules."""

        def match(self, uow, record):  # type: ignore[no-untyped-def]
            if not uow.store.persons:  # the fakes' store
                return MatchDecision(None, LinkMethod.NEW)
            first = min(uow.store.persons)
            return MatchDecision(first, LinkMethod.AUTO, 1.0, {"reason": "careless"})

        def pair(self, a, b):  # type: ignore[no-untyped-def]
            return PairVerdict(True, False, 1.0)

    env = IdentityEnv(CarelessMatcher())
    env.register("CHRU", "1", INS_A, **TRAITS)
    env.register("ICL", "2", INS_B, **TRAITS)
    assert env.person("ICL", "2") != env.person("CHRU", "1")
    assert env.link_of("ICL", "2").evidence["refused"]
    env.register("MRUN", "3", **TRAITS)  # no INS: may join
    assert env.person("MRUN", "3") == env.person("CHRU", "1")


def test_may_join_checks_the_other_ins_and_the_separations() -> None:
    from mpi.identity import IdentitySession

    env = IdentityEnv()
    env.register("CHRU", "1", INS_A, **TRAITS)
    env.register("ICL", "2", **dict(TRAITS, given_names=("Claire",)))
    env.register("MRUN", "3", **dict(TRAITS, given_names=("Paul",), sex="M"))
    env.unlink(("MRUN", "3"), ("ICL", "2"))
    with env.factory() as uow:
        session = IdentitySession(env.service, uow, STAFF)
        chru = uow.records.by_identifier(Identifier("CHRU", "1"))
        icl = uow.records.by_identifier(Identifier("ICL", "2"))
        mrun = uow.records.by_identifier(Identifier("MRUN", "3"))
        assert chru is not None and icl is not None and mrun is not None
        other_ins = dataclasses.replace(icl, ins=INS_B, reliability=("VALI",))
        same_ins = dataclasses.replace(icl, ins=INS_A, reliability=("VALI",))
        chru_person = session.person_of(chru)
        assert not session.may_join(other_ins, chru_person)
        assert session.may_join(same_ins, chru_person)
        assert session.may_join(icl, chru_person)
        assert session.may_join(chru, chru_person)  # its own record is no other INS
        assert not session.may_join(icl, session.person_of(mrun))  # declared different
        assert session.may_join(mrun, chru_person)


# -- (b) an A40 merge checks compatibility --------------------------------------------------


def test_an_a40_merge_never_makes_a_person_of_two_qualified_ins() -> None:
    env = IdentityEnv()
    env.register("CHRU", "old", INS_A, **TRAITS)
    env.register("ICL", "9", INS_A, **TRAITS)  # the same person as CHRU old, by its INS
    env.register("CHRU", "new", INS_B, **dict(TRAITS, given_names=("Claire",)))
    env.merge("CHRU", "new", "old")
    assert env.person("CHRU", "old") == env.person("CHRU", "new")  # the retired record follows
    assert env.person("ICL", "9") != env.person("CHRU", "new")  # its person does not
    assert persons_with_two_qualified_ins(env) == []


def test_an_a40_merge_of_compatible_persons_brings_the_other_records_along() -> None:
    env = IdentityEnv()
    env.register("CHRU", "old", INS_A, **TRAITS)
    env.register("ICL", "9", INS_A, **TRAITS)
    env.register("CHRU", "new", **dict(TRAITS, given_names=("Claire",)))
    env.merge("CHRU", "new", "old")
    assert env.person("ICL", "9") == env.person("CHRU", "new")


# -- (c) the runner-up ambiguity ------------------------------------------------------------


def test_two_equally_good_persons_are_proposed_both_never_one_picked() -> None:
    env = IdentityEnv()
    env.register("CHRU", "1", **TRAITS)
    env.register("CHRU", "2", **TRAITS)  # same establishment: two patients until an A40
    assert env.person("CHRU", "1") != env.person("CHRU", "2")
    env.register("ICL", "3", **TRAITS)
    mine = env.person("ICL", "3")
    assert mine not in (env.person("CHRU", "1"), env.person("CHRU", "2"))
    assert env.link_of("ICL", "3").method is LinkMethod.NEW
    assert env.link_of("ICL", "3").evidence["ambiguous"] is True
    proposed = {t.person_id for t in env.open_tasks(ReviewKind.DUPLICATE)
                if t.record_id == env.record("ICL", "3").id}
    assert proposed == {env.person("CHRU", "1"), env.person("CHRU", "2")}


def test_a_runner_up_far_enough_behind_leaves_the_best_linked() -> None:
    env = IdentityEnv()
    env.register("CHRU", "1", **TRAITS)
    # Another person close to her, but without her phone, postcode or birthplace.
    env.register("MRUN", "2", **dict(TRAITS, phone=None, postcode=None, birthplace=None,
                                      given_names=("Hélène",)))
    env.register("ICL", "3", **TRAITS)
    assert env.person("ICL", "3") == env.person("CHRU", "1")
    runner_up = env.link_of("ICL", "3").evidence.get("runner_up")
    assert runner_up is None or runner_up["person"] != env.person("CHRU", "1")


# -- (e) the thresholds -------------------------------------------------------------------


def test_the_thresholds_are_pinned() -> None:
    assert DEFAULT_MODEL.auto_link_probability == 0.9999
    assert DEFAULT_MODEL.review_probability == 0.5
    assert DEFAULT_MODEL.ambiguity_margin_bits == 6.0
    defaults = {f.name: f.default for f in dataclasses.fields(MatchModel)}
    assert defaults["auto_link_probability"] == 0.9999
    assert defaults["review_probability"] == 0.5
    assert defaults["ambiguity_margin_bits"] == 6.0
    document = DEFAULT_MODEL.to_json()
    for key in ("auto_link_probability", "review_probability", "ambiguity_margin_bits"):
        del document[key]
    read = MatchModel.from_json(document)  # a stored model from before the thresholds
    assert (read.auto_link_probability, read.review_probability,
            read.ambiguity_margin_bits) == (0.9999, 0.5, 6.0)


def test_a_probable_match_below_the_automatic_threshold_goes_to_review() -> None:
    env = IdentityEnv()
    env.register("CHRU", "1", **TRAITS)
    probable = dict(TRAITS, given_names=("Hélèna",), phone=None, postcode=None,
                    birthplace=None)
    score = env.matcher.score_pair(new_record("ICL", "2", **probable),
                                   new_record("CHRU", "1", **TRAITS))
    assert 0.5 <= score.probability < 0.9999  # the case this test is about
    env.register("ICL", "2", **probable)
    assert env.person("ICL", "2") != env.person("CHRU", "1")
    [task] = env.open_tasks(ReviewKind.DUPLICATE)
    assert task.person_id == env.person("CHRU", "1")


# -- (8) every decision explains itself ---------------------------------------------------


def test_the_evidence_of_a_link_and_of_a_task_names_fields_keys_model_and_thresholds() -> None:
    env = IdentityEnv()
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    env.register("MRUN", "3", **dict(TRAITS, birth_date=date(1975, 1, 1), phone=None))
    link = env.link_of("ICL", "2").evidence
    [task] = env.open_tasks()
    for evidence in (link, task.evidence):
        assert set(evidence["fields"]) == {"family_name", "given_name", "birth_date", "sex",
                                           "birthplace", "postcode", "phone"}
        assert all({"level", "weight"} <= set(f) for f in evidence["fields"].values())
        assert evidence["model"] == {"version": "default", "auto_link_probability": 0.9999,
                                     "review_probability": 0.5, "ambiguity_margin_bits": 6.0}
        assert evidence["blocking_keys"]
        assert evidence["candidate_record"] == env.record("CHRU", "1").id
    assert "name_year" in link["blocking_keys"] and "date_sex" in link["blocking_keys"]
    assert "date_sex" not in task.evidence["blocking_keys"]  # 01/01 is not her birth date
    assert task.evidence["partial_birth_date"] is True


def test_a_retired_record_does_not_hide_a_twin_among_the_person_s_records() -> None:
    env = IdentityEnv()
    env.register("CHRU", "old", **TRAITS)
    env.register("CHRU", "new", **TRAITS)  # a duplicate IPP of hers at the CHRU
    env.merge("CHRU", "new", "old")  # the CHRU merges them: her person's first record retires
    env.register("ICL", "2", **dict(TRAITS, given_names=()))  # no given names: joins her
    assert env.person("ICL", "2") == env.person("CHRU", "new")
    env.register("MRUN", "3", **dict(TRAITS, given_names=("Claire",)))  # her twin sister
    assert env.person("MRUN", "3") != env.person("CHRU", "new")


def test_the_thresholds_are_inclusive() -> None:
    probe = IdentityEnv()
    score = probe.matcher.score_pair(new_record("ICL", "2", **TRAITS),
                                     new_record("CHRU", "1", **TRAITS))
    at_auto = dataclasses.replace(DEFAULT_MODEL, auto_link_probability=score.probability)
    env = IdentityEnv(ProbabilisticMatcher(NATIONAL, at_auto))
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    assert env.person("ICL", "2") == env.person("CHRU", "1")  # at the threshold: linked
    at_review = dataclasses.replace(DEFAULT_MODEL, auto_link_probability=1.0,
                                    review_probability=score.probability)
    env = IdentityEnv(ProbabilisticMatcher(NATIONAL, at_review))
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    assert [t.person_id for t in env.open_tasks()] == [env.person("CHRU", "1")]


def test_the_margin_and_the_review_threshold_are_inclusive_for_the_runner_up() -> None:
    probe = IdentityEnv()
    best = probe.matcher.score_pair(new_record("ICL", "3", **TRAITS),
                                    new_record("CHRU", "1", **TRAITS))
    other = dict(TRAITS, phone=None)
    runner = probe.matcher.score_pair(new_record("ICL", "3", **TRAITS),
                                      new_record("MRUN", "2", **other))
    at_margin = dataclasses.replace(DEFAULT_MODEL,
                                    ambiguity_margin_bits=best.weight - runner.weight)
    runner_at_review = dataclasses.replace(DEFAULT_MODEL, ambiguity_margin_bits=1000.0,
                                           review_probability=runner.probability)
    for model, linked in ((at_margin, True), (runner_at_review, False)):
        env = IdentityEnv(ProbabilisticMatcher(NATIONAL, model))
        env.register("CHRU", "1", **TRAITS)
        env.register("MRUN", "2", **other)
        env.unlink(("MRUN", "2"), ("CHRU", "1"))  # two persons, whatever the matcher did
        env.register("ICL", "3", **TRAITS)
        assert (env.person("ICL", "3") == env.person("CHRU", "1")) is linked


def test_the_evidence_of_each_decision_names_its_reason_runner_up_and_model() -> None:
    env = IdentityEnv()
    env.register("CHRU", "9", **dict(TRAITS, birth_family_name="KOWALSKI"))
    alone = env.link_of("CHRU", "9")
    assert alone.evidence["reason"] == "no candidate at or above the review threshold"
    assert alone.evidence["oversized_blocks"] == []
    assert alone.evidence["model"]["version"] == "default"
    env.register("CHRU", "1", **TRAITS)
    env.register("CHRU", "2", **TRAITS)
    env.register("ICL", "3", **TRAITS)
    ambiguous = env.link_of("ICL", "3").evidence
    runner = ambiguous["runner_up"]
    assert runner["person"] in (env.person("CHRU", "1"), env.person("CHRU", "2"))
    assert runner["weight"] == ambiguous["weight"]
    assert runner["probability"] == ambiguous["probability"]
    env.register("MRUN", "4", **dict(TRAITS, birth_family_name="KOWALSKI"))
    linked = env.link_of("MRUN", "4")
    assert linked.method is LinkMethod.AUTO
    assert linked.evidence["reason"] == "automatic link"
    assert linked.score is not None
    assert abs(linked.score - linked.evidence["probability"]) < 1e-6


def test_the_prior_and_the_frequency_of_a_family_name_weigh_as_declared() -> None:
    from mpi.matching.comparisons import FIELDS, MISSING
    from mpi.matching.profile import profile_of

    even = dataclasses.replace(DEFAULT_MODEL, prior=0.5)
    nothing = {name: MISSING for name in FIELDS}
    assert even.score(profile_of(new_record("CHRU", "1")), nothing).probability == 0.5
    martin = profile_of(new_record("CHRU", "1", birth_family_name="MARTIN"))
    rare = profile_of(new_record("CHRU", "1", birth_family_name="ZIMMERMANN"))
    family_only = dict(nothing, family_name="exact")
    assert (DEFAULT_MODEL.score(martin, family_only).weight
            < DEFAULT_MODEL.score(rare, family_only).weight)


# -- a link that still holds after a change says what holds it now -------------------------

def test_a_record_turned_into_a_newborn_placeholder_with_her_ins_is_held_by_the_ins() -> None:
    """The sequence the identity state machine found: a record linked automatically (no given
    names, her traits), then updated to a newborn's placeholder (BB1, born this year) carrying
    her qualified INS. The INS keeps it in her person; the link is an INS link, not an
    automatic one with the evidence of traits the record no longer has."""
    env = IdentityEnv()
    bridge = dict(TRAITS, given_names=())
    env.register("CHRU", "1", INS_A, **bridge)
    env.register("MRUN", "1", **bridge)
    assert env.link_of("MRUN", "1").method is LinkMethod.AUTO
    env.register("MRUN", "1", INS_A, **dict(bridge, birth_family_name="BB1 ZIMMERMANN",
                                             birth_date=date(2026, 11, 2)))
    assert env.person("MRUN", "1") == env.person("CHRU", "1")
    link = env.link_of("MRUN", "1")
    assert link.method is LinkMethod.INS
    assert link.evidence["ins"] == "equal"
    assert link.evidence["candidate_record"] == env.record("CHRU", "1").id
    assert "fields" not in link.evidence  # no comparison of traits it no longer has


def test_a_link_that_still_holds_after_its_record_changed_carries_the_new_comparison() -> None:
    env = IdentityEnv()
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **dict(TRAITS, phone=None))
    before = env.link_of("ICL", "2")
    assert before.method is LinkMethod.AUTO and "phone" not in {
        name for name, field in before.evidence["fields"].items() if field["level"] == "exact"}
    env.register("ICL", "2", **TRAITS)  # the phone number added
    after = env.link_of("ICL", "2")
    assert after.method is LinkMethod.AUTO
    assert after.evidence["fields"]["phone"]["level"] == "exact"
    assert after.evidence["candidate_record"] == env.record("CHRU", "1").id
    assert after.evidence["reason"] == "re-examined after a change: still linked"
    assert after.score is not None and after.score >= before.score  # type: ignore[operator]
