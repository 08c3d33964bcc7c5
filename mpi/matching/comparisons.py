"""Comparison of two profiles, field by field, into mutually exclusive levels.

Each field compares to exactly one level, tried in order: missing (either side has nothing),
exact, close (the errors data entry makes), far. Declarative, as in splink: the levels are data
that the Fellegi-Sunter model gives a weight each.
"""

from __future__ import annotations

from jellyfish import jaro_winkler_similarity

from mpi.matching.phonetic import phonetic_key
from mpi.matching.profile import MatchProfile
from mpi.normalize import birth_date_relation, department_of_insee, given_names_agree_any_order

__all__ = ["MISSING", "EXACT", "CLOSE", "FAR", "FIELD_LEVELS", "FIELDS", "compare"]

MISSING, EXACT, CLOSE, FAR = "missing", "exact", "close", "far"

# The levels each field can take besides "missing", most similar first.
FIELD_LEVELS: dict[str, tuple[str, ...]] = {
    "family_name": (EXACT, CLOSE, FAR),
    "given_name": (EXACT, CLOSE, FAR),
    "birth_date": (EXACT, CLOSE, FAR),
    "sex": (EXACT, FAR),
    "birthplace": (EXACT, CLOSE, FAR),
    "postcode": (EXACT, FAR),
    "phone": (EXACT, FAR),
}
FIELDS = tuple(FIELD_LEVELS)

NAME_SIMILARITY = 0.92  # Jaro-Winkler at or above which two names are one typo apart


def _family_name(a: MatchProfile, b: MatchProfile) -> str:
    if not (a.birth_name or a.used_name) or not (b.birth_name or b.used_name):
        return MISSING
    if a.birth_name and a.birth_name == b.birth_name:
        return EXACT
    names_a = [n for n in (a.birth_name, a.used_name) if n]
    names_b = [n for n in (b.birth_name, b.used_name) if n]
    if set(names_a) & set(names_b):
        return CLOSE  # a used name against a birth name: the same word, weaker evidence
    for x in names_a:
        for y in names_b:
            if jaro_winkler_similarity(x, y) >= NAME_SIMILARITY:
                return CLOSE
            if phonetic_key(x) == phonetic_key(y):
                return CLOSE
    parts_a = set(a.birth_name_parts) | set(a.used_name_parts)
    parts_b = set(b.birth_name_parts) | set(b.used_name_parts)
    shorter, longer = sorted((parts_a, parts_b), key=len)
    if shorter and len(longer) > len(shorter) and shorter <= longer:
        return CLOSE  # MARTIN against MARTIN-DUPONT
    return FAR


def _given_name(a: MatchProfile, b: MatchProfile) -> str:
    if not a.given_names or not b.given_names:
        return MISSING
    if a.first_given == b.first_given:
        if len(a.given_names) > 1 and len(b.given_names) > 1 \
                and not set(a.given_names[1:]) & set(b.given_names[1:]):
            return CLOSE  # Lucas Mickaël against Lucas Louis: the other given names disagree
        return EXACT
    if given_names_agree_any_order(a.given_names, b.given_names):
        return CLOSE
    if a.first_given in b.given_names or b.first_given in a.given_names:
        return CLOSE
    if jaro_winkler_similarity(a.first_given, b.first_given) >= NAME_SIMILARITY:
        return CLOSE
    return FAR


def _birth_date(a: MatchProfile, b: MatchProfile) -> str:
    relation = birth_date_relation(a.birth_date, b.birth_date)
    if relation == "missing":
        return MISSING
    if relation == "exact":
        return EXACT
    if relation in ("unknown_day", "swapped", "one_typo"):
        return CLOSE
    return FAR


def _equal(x: str | None, y: str | None) -> str:
    if not x or not y:
        return MISSING
    return EXACT if x == y else FAR


def _birthplace(a: MatchProfile, b: MatchProfile) -> str:
    level = _equal(a.birthplace, b.birthplace)
    if level == FAR and department_of_insee(a.birthplace) == department_of_insee(b.birthplace):
        return CLOSE
    return level


def compare(a: MatchProfile, b: MatchProfile) -> dict[str, str]:
    """The level of each field for a pair of profiles."""
    return {
        "family_name": _family_name(a, b),
        "given_name": _given_name(a, b),
        "birth_date": _birth_date(a, b),
        "sex": _equal(a.sex, b.sex),
        "birthplace": _birthplace(a, b),
        "postcode": _equal(a.postcode, b.postcode),
        "phone": _equal(a.phone, b.phone),
    }
