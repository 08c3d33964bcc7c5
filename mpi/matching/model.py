"""The Fellegi-Sunter model: m and u per comparison level, clamped log2(m/u) weights, a
term-frequency adjustment for family names, and the thresholds of the decision.

A frozen value, serializable to JSON: the database keeps every trained version and the one in
force (see `mpi train`); the defaults below ship with the code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mpi.matching.comparisons import EXACT, FIELD_LEVELS, FIELDS, MISSING
from mpi.matching.profile import MatchProfile

__all__ = ["MatchModel", "Score", "DEFAULT_MODEL", "WEIGHT_CLAMP"]

WEIGHT_CLAMP = (-10.0, 16.0)  # no single field may decide alone beyond these (bits)
U_FLOOR = 1e-6  # below this, u says more about the sample than about the population


@dataclass(frozen=True)
class Score:
    """The evidence for one pair: total weight (bits), probability and per-field detail."""

    weight: float
    probability: float
    levels: Mapping[str, str]
    weights: Mapping[str, float]

    def evidence(self) -> dict[str, Any]:
        """Per field: the level and its weight; which agreed, disagreed or were missing."""
        return {
            "weight": round(self.weight, 3),
            "probability": round(self.probability, 6),
            "fields": {
                name: {"level": self.levels[name], "weight": round(self.weights[name], 3)}
                for name in self.levels
            },
        }


@dataclass(frozen=True)
class MatchModel:
    """m and u per field and level; ``prior`` is the share of candidate pairs that match."""

    m: Mapping[str, Mapping[str, float]]
    u: Mapping[str, Mapping[str, float]]
    prior: float
    name_frequencies: Mapping[str, float] = field(default_factory=dict)
    auto_link_probability: float = 0.9999
    review_probability: float = 0.5
    ambiguity_margin_bits: float = 6.0
    version: str = "default"

    # -- weights ---------------------------------------------------------------------------

    def level_weight(self, name: str, level: str) -> float:
        if level == MISSING:
            return 0.0
        return _clamped(self.m[name][level], self.u[name][level])

    def family_exact_weight(self, profile: MatchProfile) -> float:
        """Agreement on a common name is weak evidence (MARTIN), on a rare one strong
        (ZIMMERMANN): u is the name's own frequency when it is known to be common."""
        frequency = self.name_frequencies.get(profile.birth_name)
        u = max(frequency, self.u["family_name"][EXACT]) if frequency else None
        if u is None:
            return self.level_weight("family_name", EXACT)
        return _clamped(self.m["family_name"][EXACT], u)

    def score(self, record: MatchProfile, levels: Mapping[str, str]) -> Score:
        weights = {}
        for name in FIELDS:
            level = levels[name]
            if name == "family_name" and level == EXACT:
                weights[name] = self.family_exact_weight(record)
            else:
                weights[name] = self.level_weight(name, level)
        total = sum(weights.values())
        prior_bits = math.log2(self.prior / (1 - self.prior))
        probability = 1 / (1 + 2 ** -(prior_bits + total))
        return Score(total, probability, dict(levels), weights)

    # -- persistence -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "prior": self.prior,
            "m": {k: dict(v) for k, v in self.m.items()},
            "u": {k: dict(v) for k, v in self.u.items()},
            "name_frequencies": dict(self.name_frequencies),
            "auto_link_probability": self.auto_link_probability,
            "review_probability": self.review_probability,
            "ambiguity_margin_bits": self.ambiguity_margin_bits,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatchModel:
        """Raises KeyError/ValueError for a document that is not a complete model."""
        model = cls(
            m={k: dict(v) for k, v in data["m"].items()},
            u={k: dict(v) for k, v in data["u"].items()},
            prior=float(data["prior"]),
            name_frequencies=dict(data.get("name_frequencies", {})),
            auto_link_probability=float(data.get("auto_link_probability", 0.9999)),
            review_probability=float(data.get("review_probability", 0.5)),
            ambiguity_margin_bits=float(data.get("ambiguity_margin_bits", 6.0)),
            version=str(data.get("version", "unnamed")),
        )
        model.check()
        return model

    def check(self) -> None:
        """Raises ValueError unless every field has a probability in (0, 1] per level."""
        for name, levels in FIELD_LEVELS.items():
            for level in levels:
                for table in (self.m, self.u):
                    value = table[name][level]
                    if not 0 < value <= 1:
                        raise ValueError(f"{name}/{level}: {value} is not a probability")
        if not 0 < self.prior < 1:
            raise ValueError("the prior must be strictly between 0 and 1")

    def with_version(self, version: str) -> MatchModel:
        return replace(self, version=version)


def _clamped(m: float, u: float) -> float:
    low, high = WEIGHT_CLAMP
    return max(low, min(high, math.log2(max(m, U_FLOOR) / max(u, U_FLOOR))))


# Shipped defaults: m and u estimated on the shipped synthetic population (see `mpi train`
# to re-estimate them on the live database); the name frequencies of the commonest French
# family names, so that MARTIN counts for less than ZIMMERMANN from the first day.
DEFAULT_MODEL = MatchModel(
    m={
        "family_name": {"exact": 0.93, "close": 0.06, "far": 0.01},
        "given_name": {"exact": 0.91, "close": 0.07, "far": 0.02},
        "birth_date": {"exact": 0.95, "close": 0.045, "far": 0.005},
        "sex": {"exact": 0.995, "far": 0.005},
        "birthplace": {"exact": 0.95, "close": 0.03, "far": 0.02},
        "postcode": {"exact": 0.75, "far": 0.25},
        "phone": {"exact": 0.6, "far": 0.4},
    },
    u={
        "family_name": {"exact": 0.002, "close": 0.004, "far": 0.994},
        "given_name": {"exact": 0.01, "close": 0.004, "far": 0.986},
        "birth_date": {"exact": 0.0002, "close": 0.001, "far": 0.9988},
        "sex": {"exact": 0.5, "far": 0.5},
        "birthplace": {"exact": 0.05, "close": 0.3, "far": 0.65},
        "postcode": {"exact": 0.05, "far": 0.95},
        "phone": {"exact": 0.0001, "far": 0.9999},
    },
    prior=1e-4,
    name_frequencies={
        "MARTIN": 0.0060, "BERNARD": 0.0035, "THOMAS": 0.0030, "PETIT": 0.0028,
        "ROBERT": 0.0027, "RICHARD": 0.0027, "DURAND": 0.0025, "DUBOIS": 0.0025,
        "MOREAU": 0.0023, "LAURENT": 0.0023, "SIMON": 0.0022, "MICHEL": 0.0022,
        "LEFEBVRE": 0.0020, "LEROY": 0.0019, "ROUX": 0.0018, "DAVID": 0.0018,
        "BERTRAND": 0.0017, "MOREL": 0.0017, "FOURNIER": 0.0016, "GIRARD": 0.0016,
        "BONNET": 0.0015, "DUPONT": 0.0015, "LAMBERT": 0.0015, "FONTAINE": 0.0014,
        "ROUSSEAU": 0.0014, "VINCENT": 0.0014, "MULLER": 0.0014, "LEFEVRE": 0.0014,
        "FAURE": 0.0013, "ANDRE": 0.0013, "MERCIER": 0.0013, "BLANC": 0.0013,
        "GUERIN": 0.0012, "BOYER": 0.0012, "GARNIER": 0.0012, "CHEVALIER": 0.0012,
        "FRANCOIS": 0.0012, "LEGRAND": 0.0011, "GAUTHIER": 0.0011, "GARCIA": 0.0011,
        "PERRIN": 0.0011, "ROBIN": 0.0011, "CLEMENT": 0.0011, "MORIN": 0.0011,
        "NICOLAS": 0.0010, "HENRY": 0.0010, "ROUSSEL": 0.0010, "MATHIEU": 0.0010,
        "GAUTIER": 0.0010, "MASSON": 0.0010, "SCHMITT": 0.0012, "COLIN": 0.0010,
    },
)
DEFAULT_MODEL.check()
