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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import combinations

from mpi.matching.comparisons import FIELD_LEVELS, FIELDS, MISSING, compare
from mpi.matching.model import DEFAULT_MODEL, MatchModel
from mpi.matching.profile import MatchProfile, blocking_keys, profile_of
from mpi.ports import UnitOfWork

__all__ = [
    "model_in_force",
    "estimate_u",
    "pairs_by_rule",
    "level_frequencies",
    "RULE_FIELDS",
    "expectation_maximization",
    "estimate_m_by_rule",
    "match_share",
    "name_frequencies",
    "train_model",
    "check_plausible",
    "TrainedModel",
    "retrain",
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


def _distribution(counts: Mapping[str, Mapping[str, float]],
                  field_levels: Mapping[str, Sequence[str]] = FIELD_LEVELS
                  ) -> dict[str, dict[str, float]]:
    table = {}
    for name, levels in field_levels.items():
        total = sum(counts[name][level] for level in levels) + SMOOTHING * len(levels)
        table[name] = {level: (counts[name][level] + SMOOTHING) / total for level in levels}
    return table


def estimate_u(profiles: Sequence[MatchProfile], pairs: int,
               rng: random.Random) -> dict[str, dict[str, float]]:
    """Level frequencies among random pairs (the non-match distribution)."""
    if len(profiles) < 2:
        raise ValueError("u needs at least two records")
    indexes = range(len(profiles))
    return level_frequencies(
        (_pattern(profiles[a], profiles[b]) for a, b in (rng.sample(indexes, 2)
                                                         for _ in range(pairs))),
        FIELDS, FIELD_LEVELS,
    )


def level_frequencies(patterns: Iterable[Pattern], fields: Sequence[str],
                      levels: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """The (smoothed) frequency of each level of each field among ``patterns``, missing
    values left out: u when the patterns are those of random pairs."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for pattern in patterns:
        for name, level in zip(fields, pattern, strict=True):
            if level != MISSING:
                counts[name][level] += 1
    return _distribution(counts, levels)


# The fields each blocking key makes (almost) always agree: within its candidate pairs they
# say nothing about matching, so EM on those pairs must neither use nor estimate them.
RULE_FIELDS: dict[str, frozenset[str]] = {
    "name_year": frozenset({"family_name", "birth_date"}),
    "date_sex": frozenset({"birth_date", "sex"}),
    "given_family": frozenset({"given_name", "family_name"}),
    "place_date": frozenset({"birthplace", "birth_date"}),
    "used_name": frozenset({"family_name", "birth_date"}),
}


def pairs_by_rule(profiles: Sequence[MatchProfile], block_cap: int
                  ) -> dict[str, set[tuple[int, int]]]:
    """The candidate pairs each blocking key produces (blocks over ``block_cap`` skipped);
    the birth-name and used-name keys are cross-compared, as the matcher does."""
    blocks: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, profile in enumerate(profiles):
        for name, value in blocking_keys(profile).items():
            if value is None:
                continue
            rule = "name_year" if name == "used_name" else name
            blocks[rule][value].append(index)
    result: dict[str, set[tuple[int, int]]] = {}
    for rule, members_by_value in blocks.items():
        pairs: set[tuple[int, int]] = set()
        for members in members_by_value.values():
            if 1 < len(members) <= block_cap:
                pairs.update(combinations(sorted(set(members)), 2))
        result[rule] = pairs
    return result


def expectation_maximization(
    patterns: Counter[Pattern], fields: Sequence[str], levels: Mapping[str, Sequence[str]],
    u: Mapping[str, Mapping[str, float]], m: Mapping[str, Mapping[str, float]], prior: float,
    active: frozenset[str], iterations: int = 50,
) -> tuple[dict[str, dict[str, float]], float]:
    """EM for m (of the ``active`` fields only) and the match share, u held fixed; inactive
    fields take no part (the blocking made them agree). Returns the m of the active fields."""
    if not patterns:
        raise ValueError("no candidate pairs to learn from")
    positions = [(i, name) for i, name in enumerate(fields) if name in active]
    current = {name: dict(m[name]) for _, name in positions}
    for _ in range(iterations):
        # Expected counts are fractional: a pair counts for its posterior probability.
        expected: dict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
        matches = 0.0
        total = 0
        for pattern, count in patterns.items():
            p_match, p_other = prior, 1 - prior
            for i, name in positions:
                level = pattern[i]
                if level != MISSING:
                    p_match *= current[name][level]
                    p_other *= u[name][level]
            posterior = p_match / (p_match + p_other)
            matches += posterior * count
            total += count
            for i, name in positions:
                level = pattern[i]
                if level != MISSING:
                    expected[name][level] += posterior * count
        current = _distribution(expected, {name: levels[name] for _, name in positions})
        prior = min(max(matches / total, 1e-6), 1 - 1e-6)
    return current, prior


def estimate_m_by_rule(
    rules: Mapping[str, tuple[frozenset[str], Counter[Pattern]]], fields: Sequence[str],
    levels: Mapping[str, Sequence[str]], u: Mapping[str, Mapping[str, float]],
    start: Mapping[str, Mapping[str, float]], iterations: int = 50,
) -> dict[str, dict[str, float]]:
    """m per field, splink-style: one EM per blocking rule on that rule's candidate pairs,
    estimating only the fields the rule leaves free; each field's m is the average of the
    rules that estimated it, weighted by their expected number of matches. A field every rule
    blocks on keeps its ``start`` value."""
    estimates: dict[str, list[tuple[float, dict[str, float]]]] = defaultdict(list)
    for blocked, patterns in rules.values():
        if not patterns:
            continue
        active = frozenset(fields) - blocked
        m, share = expectation_maximization(patterns, fields, levels, u, start, 0.1, active,
                                            iterations)
        weight = share * sum(patterns.values())
        for name, table in m.items():
            estimates[name].append((weight, table))
    result = {name: dict(start[name]) for name in fields}
    for name, found in estimates.items():
        total = sum(w for w, _ in found)
        if total <= 0:
            continue
        result[name] = {
            level: sum(w * table[level] for w, table in found) / total for level in levels[name]
        }
    return result


def match_share(patterns: Counter[Pattern], fields: Sequence[str],
                m: Mapping[str, Mapping[str, float]], u: Mapping[str, Mapping[str, float]],
                iterations: int = 30) -> float:
    """The share of matches among candidate pairs, with m and u fixed (EM on the prior only)."""
    total = sum(patterns.values())
    if not total:
        raise ValueError("no candidate pairs to learn from")
    ratios = []
    for pattern, count in patterns.items():
        ratio = 1.0
        for name, level in zip(fields, pattern, strict=True):
            if level != MISSING:
                ratio *= m[name][level] / u[name][level]
        ratios.append((ratio, count))
    prior = 0.1
    for _ in range(iterations):
        odds = prior / (1 - prior)
        matches = sum(count * (odds * r) / (1 + odds * r) for r, count in ratios)
        prior = min(max(matches / total, 1e-6), 1 - 1e-6)
    return prior


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
    by_rule = pairs_by_rule(usable, block_cap)
    patterns = {pair: _pattern(usable[pair[0]], usable[pair[1]])
                for pair in set().union(*by_rule.values())}
    if not patterns:
        raise ValueError("no candidate pairs to learn from")
    rules = {rule: (RULE_FIELDS[rule], Counter(patterns[pair] for pair in pairs))
             for rule, pairs in by_rule.items()}
    m = estimate_m_by_rule(rules, FIELDS, FIELD_LEVELS, u, base.m)
    # The prior is the probability that two records drawn at random match (as in splink):
    # the scores count the agreement on the blocking fields, so the share of matches among
    # candidate pairs would count that evidence twice.
    matches = match_share(Counter(patterns.values()), FIELDS, m, u) * len(patterns)
    every_pair = len(usable) * (len(usable) - 1) / 2
    prior = min(max(matches / every_pair, 1e-9), 0.5)
    model = replace(base, m=m, u=u, prior=prior, name_frequencies=name_frequencies(usable),
                    version=version)
    model.check()
    check_plausible(model)
    return model


def check_plausible(model: MatchModel) -> None:
    """Refuse a model that expectation-maximization drove to a degenerate answer: nearly
    every candidate pair a match, or agreement on an identity trait not counting for a match
    (or disagreement not against it). Raises ValueError saying what is wrong."""
    if model.prior >= 0.95:
        raise ValueError(
            f"EM estimated that {model.prior:.0%} of candidate pairs match: the estimate "
            "collapsed (blocked pairs agree more than random ones); the model is not usable")
    for name in ("family_name", "given_name", "birth_date"):
        if model.level_weight(name, "exact") <= 0:
            raise ValueError(f"agreement on {name} does not count for a match in this model")
        if model.level_weight(name, "far") >= 0:
            raise ValueError(f"disagreement on {name} does not count against a match in this "
                             "model")


@dataclass(frozen=True)
class TrainedModel:
    model: MatchModel
    records: int  # how many records it learned from
    activated: bool


def retrain(uow: UnitOfWork, *, sample: int, now: datetime, activate: bool) -> TrainedModel:
    """Re-estimate the model from up to ``sample`` records of the live index, starting from
    the model in force, and store it as a new version (put in force when ``activate``); the
    caller commits. Raises ValueError when the estimate is refused (too little data, or a
    degenerate model: see :func:`check_plausible`)."""
    records = uow.records.sample(sample)
    version = f"trained-{now:%Y%m%dT%H%M%SZ}"
    model = train_model([profile_of(r) for r in records], base=model_in_force(uow),
                        version=version)
    uow.models.add(version, model.to_json(), activate)
    return TrainedModel(model, len(records), activate)
