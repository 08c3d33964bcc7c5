"""Estimating the matching model: u from random pairs, and the refusal of degenerate EM."""

from __future__ import annotations

import random
import string
from dataclasses import replace

import pytest

from mpi.matching.model import DEFAULT_MODEL, MatchModel
from mpi.matching.profile import MatchProfile
from mpi.matching.training import check_plausible, estimate_u, name_frequencies


def profile(name: str, given: str, sex: str) -> MatchProfile:
    return MatchProfile(name, (name,), "", (), (given,), None, sex, None, None, None, None, False)


def test_u_of_sex_among_random_pairs_is_about_one_half() -> None:
    rng = random.Random(3)

    def word() -> str:
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(8))

    people = [profile(word(), word(), "MF"[i % 2]) for i in range(400)]
    u = estimate_u(people, 20_000, rng)
    assert 0.45 < u["sex"]["exact"] < 0.55
    assert u["family_name"]["far"] > 0.95


def test_common_names_get_their_frequency() -> None:
    people = [profile("MARTIN", "A", "M")] * 30 + [profile(f"R{i}", "A", "M") for i in range(70)]
    frequencies = name_frequencies(people, minimum=0.05)
    assert frequencies == {"MARTIN": 0.3}


def test_em_per_blocking_rule_learns_a_usable_model_from_the_synthetic_population() -> None:
    """EM over every candidate pair at once collapses (blocked pairs agree on the blocking
    fields whatever they are); one EM per blocking rule, on the fields it leaves free, does
    not."""
    from adapters.evaluation.population import generate_population, source_record
    from mpi.matching.profile import profile_of
    from mpi.matching.training import train_model

    profiles = [profile_of(source_record(r)) for r in generate_population(1500, seed=4)]
    model = train_model(profiles, random_pairs=50_000)
    assert 0 < model.prior < 0.95
    for name in ("family_name", "given_name", "birth_date", "sex", "postcode"):
        assert model.level_weight(name, "exact") > 0 > model.level_weight(name, "far"), name
    assert model.level_weight("birth_date", "exact") > model.level_weight("birth_date", "close")
    assert "MARTIN" in model.name_frequencies or len(model.name_frequencies) > 10


def test_a_model_where_most_candidate_pairs_match_is_refused() -> None:
    collapsed: MatchModel = replace(DEFAULT_MODEL, prior=0.99)
    with pytest.raises(ValueError, match="collapsed"):
        check_plausible(collapsed)
    check_plausible(DEFAULT_MODEL)
