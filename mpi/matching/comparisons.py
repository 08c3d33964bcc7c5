"""Comparison of two profiles, field by field, into mutually exclusive levels.

Declarative, as in splink: each field's comparison is an ordered list of named levels, each a
predicate over the two profiles, and a pair takes the first level whose predicate holds. The
first level is always "missing" (either side has nothing to compare), the last one the else
level ("far"); between them the most similar first: exact, then close (the errors data entry
makes). The Fellegi-Sunter model gives each level other than "missing" a weight, so the table
of levels (:data:`FIELD_LEVELS`) is read off these declarations rather than kept beside them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

from jellyfish import jaro_winkler_similarity

from mpi.matching.keyboard import keyboard_slip
from mpi.matching.phonetic import phonetic_key
from mpi.matching.profile import MatchProfile
from mpi.normalize import birth_date_relation, department_of_insee, given_names_agree_any_order

__all__ = [
    "MISSING",
    "EXACT",
    "CLOSE",
    "FAR",
    "NAME_SIMILARITY",
    "Predicate",
    "Level",
    "Comparison",
    "otherwise",
    "COMPARISONS",
    "FIELD_LEVELS",
    "FIELDS",
    "comparison_of",
    "compare",
    "names_swapped",
]

MISSING, EXACT, CLOSE, FAR = "missing", "exact", "close", "far"

NAME_SIMILARITY = 0.92  # Jaro-Winkler at or above which two names are one typo apart

Predicate = Callable[[MatchProfile, MatchProfile], bool]
_Trait = Callable[[MatchProfile], str | None]


def otherwise(a: MatchProfile, b: MatchProfile) -> bool:
    """The predicate of the else level: holds for every pair."""
    return True


@dataclass(frozen=True)
class Level:
    """One level of a comparison: its name (the key of m and u), the predicate a pair must
    satisfy, asked only when no level before it held, and what it means in a few words."""

    name: str
    holds: Predicate
    description: str


@dataclass(frozen=True)
class Comparison:
    """How one field compares: its levels in the order they are tried."""

    field: str
    levels: tuple[Level, ...]
    description: str
    _tests: tuple[tuple[str, Predicate], ...] = dataclasses.field(init=False, repr=False,
                                                                  compare=False)
    _else: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Raises ValueError unless the levels start with "missing", end with an else level
        and are named once each: then every pair takes exactly one level."""
        names = [level.name for level in self.levels]
        if len(names) < 3 or names[0] != MISSING or self.levels[-1].holds is not otherwise:
            raise ValueError(f"{self.field}: the levels must run from {MISSING!r} to an else "
                             "level, with at least one level between them")
        if len(set(names)) != len(names):
            raise ValueError(f"{self.field}: two levels have one name")
        # Read once per pair and field on the hot path: kept ready as plain tuples.
        object.__setattr__(self, "_tests",
                           tuple((level.name, level.holds) for level in self.levels[:-1]))
        object.__setattr__(self, "_else", self.levels[-1].name)

    @property
    def weighted_levels(self) -> tuple[str, ...]:
        """The names of the levels the model weighs (all but "missing"), most similar first."""
        return tuple(level.name for level in self.levels[1:])

    def level(self, name: str) -> Level:
        """The level of that name. Raises KeyError when the comparison has none."""
        for level in self.levels:
            if level.name == name:
                return level
        raise KeyError(f"{self.field} has no level {name!r}")

    def level_of(self, a: MatchProfile, b: MatchProfile) -> str:
        """The name of the first level whose predicate holds for the pair."""
        for name, holds in self._tests:
            if holds(a, b):
                return name
        return self._else  # the else level, which holds for every pair


# -- predicates shared by several fields ---------------------------------------------------------


def _either_lacks(trait: _Trait) -> Predicate:
    """The predicate: either profile has no value (None or empty) for the trait."""
    return lambda a, b: not trait(a) or not trait(b)


def _same(trait: _Trait) -> Predicate:
    """The predicate: both profiles have the same value for the trait."""
    return lambda a, b: trait(a) == trait(b)


# -- family name ---------------------------------------------------------------------------------


def _family_names(profile: MatchProfile) -> list[str]:
    return [name for name in (profile.birth_name, profile.used_name) if name]


def _no_family_name(a: MatchProfile, b: MatchProfile) -> bool:
    return not (a.birth_name or a.used_name) or not (b.birth_name or b.used_name)


def _same_birth_name(a: MatchProfile, b: MatchProfile) -> bool:
    return bool(a.birth_name) and a.birth_name == b.birth_name


def _family_names_close(a: MatchProfile, b: MatchProfile) -> bool:
    names_a, names_b = _family_names(a), _family_names(b)
    # A used name against a birth name: the same word, but weaker evidence than equal birth
    # names (a spouse's name is shared by the spouse).
    if set(names_a) & set(names_b):
        return True
    if any(jaro_winkler_similarity(x, y) >= NAME_SIMILARITY or phonetic_key(x) == phonetic_key(y)
           or keyboard_slip(x, y) for x in names_a for y in names_b):
        return True
    return _one_name_part_of_the_other(a, b) or names_swapped(a, b)


def names_swapped(a: MatchProfile, b: MatchProfile) -> bool:
    """The first given name of each is the birth name of the other: PAUL MARTIN entered as
    MARTIN PAUL (the family name in the given name's field, and the other way round)."""
    if not (a.birth_name and b.birth_name and a.given_names and b.given_names):
        return False
    return (a.birth_name != b.birth_name
            and a.birth_name == b.first_given.replace("-", "")
            and b.birth_name == a.first_given.replace("-", ""))


def _one_name_part_of_the_other(a: MatchProfile, b: MatchProfile) -> bool:
    """MARTIN against MARTIN-DUPONT: the parts of one side are some of the other's."""
    parts_a = set(a.birth_name_parts) | set(a.used_name_parts)
    parts_b = set(b.birth_name_parts) | set(b.used_name_parts)
    shorter, longer = sorted((parts_a, parts_b), key=len)
    return bool(shorter) and len(longer) > len(shorter) and shorter <= longer


# -- given names ---------------------------------------------------------------------------------


def _no_given_name(a: MatchProfile, b: MatchProfile) -> bool:
    return not a.given_names or not b.given_names


def _other_given_names_disagree(a: MatchProfile, b: MatchProfile) -> bool:
    """Both have given names after the first and share none of them: Lucas Mickaël against
    Lucas Louis."""
    return (len(a.given_names) > 1 and len(b.given_names) > 1
            and not set(a.given_names[1:]) & set(b.given_names[1:]))


def _same_first_given_name(a: MatchProfile, b: MatchProfile) -> bool:
    return a.first_given == b.first_given and not _other_given_names_disagree(a, b)


def _given_names_close(a: MatchProfile, b: MatchProfile) -> bool:
    return (
        a.first_given == b.first_given  # the other given names disagree (no exact level)
        or given_names_agree_any_order(a.given_names, b.given_names)
        or a.first_given in b.given_names or b.first_given in a.given_names
        or jaro_winkler_similarity(a.first_given, b.first_given) >= NAME_SIMILARITY
        or keyboard_slip(a.first_given, b.first_given)
        or names_swapped(a, b)
    )


# -- birth date ----------------------------------------------------------------------------------


def _no_birth_date(a: MatchProfile, b: MatchProfile) -> bool:
    return a.birth_date is None or b.birth_date is None


def _same_birth_date(a: MatchProfile, b: MatchProfile) -> bool:
    return a.birth_date == b.birth_date


def _birth_dates_relate(*relations: str) -> Predicate:
    """The predicate: the birth dates relate in one of these ways (``birth_date_relation``).
    Asked only of two different known dates (the levels before it are the cheap ones)."""
    return lambda a, b: birth_date_relation(a.birth_date, b.birth_date) in relations


# -- birthplace ----------------------------------------------------------------------------------


def _same_department_of_birth(a: MatchProfile, b: MatchProfile) -> bool:
    return department_of_insee(a.birthplace) == department_of_insee(b.birthplace)


# Attribute getters written in C: every candidate pair of every match goes through them.
_birthplace: _Trait = attrgetter("birthplace")
_sex: _Trait = attrgetter("sex")
_postcode: _Trait = attrgetter("postcode")
_phone: _Trait = attrgetter("phone")


# -- the declarations ----------------------------------------------------------------------------

# In the order of the fields in scores, evidence and training patterns.
COMPARISONS: tuple[Comparison, ...] = (
    Comparison("family_name", (
        Level(MISSING, _no_family_name, "no birth nor used name on one side"),
        Level(EXACT, _same_birth_name, "same birth name"),
        Level(CLOSE, _family_names_close,
              "used against birth name, one typing error or keyboard slip, phonetic code, "
              "compound name part, swapped with the given name"),
        Level(FAR, otherwise, "other family names"),
    ), "birth and used names of one record against both of the other's"),
    Comparison("given_name", (
        Level(MISSING, _no_given_name, "no given name on one side"),
        Level(EXACT, _same_first_given_name, "same first given name, the others not disagreeing"),
        Level(CLOSE, _given_names_close,
              "same first with disagreeing others, another order, first among the other's, "
              "one typing error or keyboard slip, swapped with the family name"),
        Level(FAR, otherwise, "other first given names"),
    ), "the first given name, and the others when both records have some"),
    Comparison("birth_date", (
        Level(MISSING, _no_birth_date, "no birth date on one side"),
        Level(EXACT, _same_birth_date, "same birth date"),
        Level(CLOSE, _birth_dates_relate("unknown_day", "swapped", "one_typo"),
              "day unknown (01/01 or the 1st), day and month swapped, one typing error"),
        Level(FAR, otherwise, "other birth dates"),
    ), "the birth dates, as birth_date_relation relates them"),
    Comparison("sex", (
        Level(MISSING, _either_lacks(_sex), "no sex on one side"),
        Level(EXACT, _same(_sex), "same sex"),
        Level(FAR, otherwise, "other sex"),
    ), "administrative sex"),
    Comparison("birthplace", (
        Level(MISSING, _either_lacks(_birthplace), "no birthplace on one side"),
        Level(EXACT, _same(_birthplace), "same commune of birth"),
        Level(CLOSE, _same_department_of_birth, "another commune of the same department"),
        Level(FAR, otherwise, "other departments of birth"),
    ), "INSEE code of the commune of birth"),
    Comparison("postcode", (
        Level(MISSING, _either_lacks(_postcode), "no postcode on one side"),
        Level(EXACT, _same(_postcode), "same postcode"),
        Level(FAR, otherwise, "other postcodes"),
    ), "postcode of the address"),
    Comparison("phone", (
        Level(MISSING, _either_lacks(_phone), "no phone number on one side"),
        Level(EXACT, _same(_phone), "same phone number"),
        Level(FAR, otherwise, "other phone numbers"),
    ), "phone number, in its national form"),
)

# The levels each field can take besides "missing", most similar first.
FIELD_LEVELS: dict[str, tuple[str, ...]] = {c.field: c.weighted_levels for c in COMPARISONS}
FIELDS = tuple(FIELD_LEVELS)

_BY_FIELD = {comparison.field: comparison for comparison in COMPARISONS}


def comparison_of(field: str) -> Comparison:
    """The declared comparison of a field. Raises KeyError for a field that has none."""
    return _BY_FIELD[field]


# What compare() walks: every candidate pair of every match goes through it, so the loop over
# the declarations is written out here rather than through one method call per field.
_PLAN = tuple((c.field, c._tests, c._else) for c in COMPARISONS)


def compare(a: MatchProfile, b: MatchProfile) -> dict[str, str]:
    """The level of each field for a pair of profiles, in :data:`FIELDS` order (the first
    declared level whose predicate holds, as :meth:`Comparison.level_of`)."""
    levels: dict[str, str] = {}
    for name, tests, fallback in _PLAN:
        for level, holds in tests:
            if holds(a, b):
                levels[name] = level
                break
        else:
            levels[name] = fallback
    return levels
