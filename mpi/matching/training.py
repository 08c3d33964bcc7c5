"""Estimating the Fellegi-Sunter model from data.

u comes from random pairs of records (almost all of them different people); m and the share
of matches among candidate pairs come from expectation-maximization over the candidate pairs
that blocking produces, with u held fixed. Holding u fixed is what keeps EM from collapsing
onto "same family" or "same sex" classes on French-like data, where unconstrained EM (such
as recordlinkage's ECM classifier) was seen to fail.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import replace
from itertools import combinations
from typing import Iterable, Sequence

from mpi.matching.comparisons import FIELD_LEVELS, FIELDS, MISSING, compare
from mpi.matching.model import DEFAULT_MODEL, MatchModel
from mpi.matching.profile import MatchProfile, blocking_keys
from mpi.ports import UnitOfWork

__all__ = [
    "model_in_force",
    "estimate_u",
    "candidate_pairs",
    "estimate_m",
    "name_frequencies",
    "train_model",
    "check_plausible",
]

Pattern = tuple[str, ...]  # one level per field, in FIELDS order
SMOOTHING = 0.5  # added to every level count, so that no level has probability zero


def model_in_force(uow: UnitOfWork) -> MatchModel:
    """The model stored as active, else the shipped defaults. Raises ValueError for a stored
    document that is not a valid model."""
    stored = uow.models.active()
    if stored is None:
        return DEFAULT_MODEL
    version, document = stored
    return MatchModel.from_json(document).with_version(version)


def _pattern(a: MatchProfile, b: MatchProfile) -> Pattern:
    levels = compare(a, b)
    return tuple(levels[name] for name in FIELDS)


def _distribution(counts: dict[str, Counter[str]]) -> dict[str, dict[str, float]]:
    table = {}
    for name, levels in FIELD_LEVELS.items():
        total = sum(counts[name][level] for level in levels) + SMOOTHING * len(levels)
        table[name] = {level: (counts[name][level] + SMOOTHING) / total for level in levels}
    return table


def estimate_u(profiles: Sequence[MatchProfile], pairs: int,
               rng: random.Random) -> dict[str, dict[str, float]]:
    """Level frequencies among random pairs (the non-match distribution)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    if len(profiles) < 2:
        raise ValueError("u needs at least two records")
    for _ in range(pairs):
        a, b = rng.sample(range(len(profiles)), 2)
        for name, level in zip(FIELDS, _pattern(profiles[a], profiles[b])):
            if level != MISSING:
                counts[name][level] += 1
    return _distribution(counts)


def candidate_pairs(profiles: Sequence[MatchProfile], block_cap: int) -> set[tuple[int, int]]:
    """Pairs of indexes sharing a blocking key (name keys cross-compared), blocks over
    ``block_cap`` skipped, as the matcher would see them."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for index, profile in enumerate(profiles):
        keys = blocking_keys(profile)
        for name, value in keys.items():
            if value is None:
                continue
            family = "name" if name in ("name_year", "used_name") else name
            blocks[f"{family}={value}"].append(index)
    pairs: set[tuple[int, int]] = set()
    for members in blocks.values():
        if 1 < len(members) <= block_cap:
            pairs.update(combinations(sorted(set(members)), 2))
    return pairs


def estimate_m(patterns: Iterable[Pattern], u: dict[str, dict[str, float]], prior: float,
               iterations: int = 50) -> tuple[dict[str, dict[str, float]], float]:
    """EM for m and the match share, u fixed. Identical patterns are counted once."""
    counted = Counter(patterns)
    if not counted:
        raise ValueError("no candidate pairs to learn from")
    m = {name: dict(levels) for name, levels in DEFAULT_MODEL.m.items()}
    for _ in range(iterations):
        expected: dict[str, Counter[str]] = defaultdict(Counter)
        matches = 0.0
        total = 0
        for pattern, count in counted.items():
            p_match, p_other = prior, 1 - prior
            for name, level in zip(FIELDS, pattern):
                if level != MISSING:
                    p_match *= m[name][level]
                    p_other *= u[name][level]
            posterior = p_match / (p_match + p_other)
            matches += posterior * count
            total += count
            for name, level in zip(FIELDS, pattern):
                if level != MISSING:
                    expected[name][level] += posterior * count
        m = _distribution(expected)
        prior = min(max(matches / total, 1e-6), 1 - 1e-6)
    return m, prior


def name_frequencies(profiles: Sequence[MatchProfile], minimum: float = 5e-4) -> dict[str, float]:
    """The share of records bearing each birth name, for names at least ``minimum`` common."""
    counts = Counter(p.birth_name for p in profiles if p.birth_name and not p.fictitious)
    total = sum(counts.values()) or 1
    return {name: round(n / total, 6) for name, n in counts.most_common()
            if n / total >= minimum}


def train_model(profiles: Sequence[MatchProfile], *, base: MatchModel = DEFAULT_MODEL,
                seed: int = 1, random_pairs: int = 200_000, block_cap: int = 500,
                version: str = "trained") -> MatchModel:
    """A model estimated from these records; thresholds are kept from ``base``. Raises
    ValueError when there is too little data (fewer than two records or no candidate pair)."""
    usable = [p for p in profiles if not p.fictitious]
    rng = random.Random(seed)
    u = estimate_u(usable, random_pairs, rng)
    pairs = candidate_pairs(usable, block_cap)
    m, prior = estimate_m((_pattern(usable[a], usable[b]) for a, b in pairs), u,
                          prior=0.1)
    model = replace(base, m=m, u=u, prior=prior, name_frequencies=name_frequencies(usable),
                    version=version)
    model.check()
    check_plausible(model)
    return model


def check_plausible(model: MatchModel) -> None:
    """Refuse a model that expectation-maximization drove to a degenerate answer: matches
    must stay a minority of candidate pairs, and agreement on the identity traits must count
    for a match. Raises ValueError saying what is wrong."""
    if model.prior >= 0.5:
        raise ValueError(
            f"EM estimated that {model.prior:.0%} of candidate pairs match: the estimate "
            "collapsed (blocked pairs agree more than random ones); the model is not usable")
    for name in ("family_name", "given_name", "birth_date"):
        if model.level_weight(name, "exact") <= 0:
            raise ValueError(f"agreement on {name} does not count for a match in this model")
