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


def test_a_model_where_most_candidate_pairs_match_is_refused() -> None:
    collapsed: MatchModel = replace(DEFAULT_MODEL, prior=0.99)
    with pytest.raises(ValueError, match="collapsed"):
        check_plausible(collapsed)
    check_plausible(DEFAULT_MODEL)
