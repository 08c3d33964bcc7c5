"""The declared comparisons: each field's levels, and the same levels as the if-chain they
replaced, on generated pairs and on the candidate pairs of the synthetic population."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jellyfish import jaro_winkler_similarity

from mpi.matching.comparisons import (
    CLOSE,
    COMPARISONS,
    EXACT,
    FAR,
    FIELD_LEVELS,
    FIELDS,
    MISSING,
    NAME_SIMILARITY,
    Comparison,
    Level,
    compare,
    comparison_of,
    otherwise,
)
from mpi.matching.keyboard import keyboard_slip
from mpi.matching.phonetic import phonetic_key
from mpi.matching.profile import MatchProfile
from mpi.normalize import (
    birth_date_relation,
    department_of_insee,
    family_name_key,
    family_name_parts,
    given_names_agree_any_order,
    given_names_list,
)

# -- the oracle: the comparison as an if-chain per field, before the levels were declared ------
# (and the rules added since: keyboard slips, family and given names swapped)


def _old_swapped(a: MatchProfile, b: MatchProfile) -> bool:
    if not (a.birth_name and b.birth_name and a.given_names and b.given_names):
        return False
    if a.birth_name == b.birth_name:
        return False
    return (a.birth_name == b.given_names[0].replace("-", "")
            and b.birth_name == a.given_names[0].replace("-", ""))


def _old_family_name(a: MatchProfile, b: MatchProfile) -> str:
    if not (a.birth_name or a.used_name) or not (b.birth_name or b.used_name):
        return MISSING
    if a.birth_name and a.birth_name == b.birth_name:
        return EXACT
    names_a = [n for n in (a.birth_name, a.used_name) if n]
    names_b = [n for n in (b.birth_name, b.used_name) if n]
    if set(names_a) & set(names_b):
        return CLOSE
    for x in names_a:
        for y in names_b:
            if jaro_winkler_similarity(x, y) >= NAME_SIMILARITY:
                return CLOSE
            if phonetic_key(x) == phonetic_key(y):
                return CLOSE
            if keyboard_slip(x, y):
                return CLOSE
    parts_a = set(a.birth_name_parts) | set(a.used_name_parts)
    parts_b = set(b.birth_name_parts) | set(b.used_name_parts)
    shorter, longer = sorted((parts_a, parts_b), key=len)
    if shorter and len(longer) > len(shorter) and shorter <= longer:
        return CLOSE
    if _old_swapped(a, b):
        return CLOSE
    return FAR


def _old_given_name(a: MatchProfile, b: MatchProfile) -> str:
    if not a.given_names or not b.given_names:
        return MISSING
    if a.first_given == b.first_given:
        if len(a.given_names) > 1 and len(b.given_names) > 1 \
                and not set(a.given_names[1:]) & set(b.given_names[1:]):
            return CLOSE
        return EXACT
    if given_names_agree_any_order(a.given_names, b.given_names):
        return CLOSE
    if a.first_given in b.given_names or b.first_given in a.given_names:
        return CLOSE
    if jaro_winkler_similarity(a.first_given, b.first_given) >= NAME_SIMILARITY:
        return CLOSE
    if keyboard_slip(a.first_given, b.first_given) or _old_swapped(a, b):
        return CLOSE
    return FAR


def _old_birth_date(a: MatchProfile, b: MatchProfile) -> str:
    relation = birth_date_relation(a.birth_date, b.birth_date)
    if relation == "missing":
        return MISSING
    if relation == "exact":
        return EXACT
    if relation in ("unknown_day", "swapped", "one_typo"):
        return CLOSE
    return FAR


def _old_equal(x: str | None, y: str | None) -> str:
    if not x or not y:
        return MISSING
    return EXACT if x == y else FAR


def _old_birthplace(a: MatchProfile, b: MatchProfile) -> str:
    level = _old_equal(a.birthplace, b.birthplace)
    if level == FAR and department_of_insee(a.birthplace) == department_of_insee(b.birthplace):
        return CLOSE
    return level


def old_compare(a: MatchProfile, b: MatchProfile) -> dict[str, str]:
    return {
        "family_name": _old_family_name(a, b),
        "given_name": _old_given_name(a, b),
        "birth_date": _old_birth_date(a, b),
        "sex": _old_equal(a.sex, b.sex),
        "birthplace": _old_birthplace(a, b),
        "postcode": _old_equal(a.postcode, b.postcode),
        "phone": _old_equal(a.phone, b.phone),
    }


OLD_FIELD_LEVELS = {
    "family_name": (EXACT, CLOSE, FAR),
    "given_name": (EXACT, CLOSE, FAR),
    "birth_date": (EXACT, CLOSE, FAR),
    "sex": (EXACT, FAR),
    "birthplace": (EXACT, CLOSE, FAR),
    "postcode": (EXACT, FAR),
    "phone": (EXACT, FAR),
}

# -- profiles ----------------------------------------------------------------------------------


def profile(birth: str | None = "ADAM", given: tuple[str, ...] = ("LUCAS",),
            born: date | None = date(1991, 9, 6), sex: str | None = "M",
            birthplace: str | None = None, postcode: str | None = None,
            phone: str | None = None, used: str | None = None) -> MatchProfile:
    """A profile normalized as ``profile_of`` normalizes a record's traits."""
    return MatchProfile(family_name_key(birth), family_name_parts(birth), family_name_key(used),
                        family_name_parts(used), given_names_list(given), born, sex, birthplace,
                        postcode, phone, None, False)


FAMILY_NAMES = ["MARTIN", "MARTIN-DUPONT", "DUPONT", "ZIMMERMANN", "ZIMERMAN", "LEFEBVRE",
                "LEFEVRE", "LE GALL", "LEGALL", "DE LA FONTAINE", "FONTAINE", "D'ARGENT",
                "MEUNIER", "MEUNIE", "RENAULT", "RENAUD", "KOWALSKI", "ADAM", "LE", "", None]
GIVEN_NAMES = ["LUCAS", "MICKAEL", "LOUIS", "LOUISE", "JEAN-PIERRE", "JEAN", "PIERRE", "HELENE",
               "HELEN", "MARIE", "YASMINE", "ANNE", "ANN", "CLAIRE", ""]
BIRTH_DATES = [date(1975, 6, 14), date(1975, 1, 1), date(1975, 6, 1), date(1975, 6, 4),
               date(1975, 4, 6), date(1975, 6, 24), date(1957, 6, 14), date(1976, 6, 14),
               date(1975, 7, 14), date(1980, 1, 3), date(1908, 6, 14), date(1980, 6, 14), None]
# Invalid codes (no department) take part too: the comparison must agree on them as well.
BIRTHPLACES = ["54395", "54001", "57463", "2A004", "2B033", "97105", "97209", "99100", "XYZ",
               "ABCDE", "", None]

letters = st.text(alphabet="ABDEGILMNORSUZ -'", max_size=10)
family_names = st.one_of(st.sampled_from(FAMILY_NAMES), letters)
given_lists = st.lists(st.one_of(st.sampled_from(GIVEN_NAMES), letters), max_size=3)
birth_dates = st.one_of(st.sampled_from(BIRTH_DATES),
                        st.dates(date(1970, 1, 1), date(1981, 12, 31)))
profiles = st.builds(
    lambda birth, used, given, born, sex, place, postcode, phone: profile(
        birth, tuple(given), born, sex, place, postcode, phone, used),
    family_names, st.one_of(st.none(), family_names), given_lists, birth_dates,
    st.sampled_from(["M", "F", "", None]), st.sampled_from(BIRTHPLACES),
    st.sampled_from(["54000", "57000", "", None]), st.sampled_from(["0612345678", "0387000000",
                                                                    None]),
)


# The traits of a profile, a name with its parts.
TRAITS = (("birth_name", "birth_name_parts"), ("used_name", "used_name_parts"), ("given_names",),
          ("birth_date",), ("sex",), ("birthplace",), ("postcode",), ("phone",))


@st.composite
def related_pairs(draw: st.DrawFn) -> tuple[MatchProfile, MatchProfile]:
    """Two profiles, the second taking each trait of the first or one of its own: pairs that
    agree on some fields, the way candidate pairs do."""
    a, other = draw(profiles), draw(profiles)
    b = {}
    for trait in TRAITS:
        source = draw(st.sampled_from((a, other)))
        b.update({name: getattr(source, name) for name in trait})
    return a, MatchProfile(**b, ins=None, fictitious=False)


# -- the declared comparison equals the old one ------------------------------------------------


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(related_pairs())
def test_the_declared_levels_are_those_of_the_old_if_chain(pair: tuple[MatchProfile, MatchProfile]
                                                           ) -> None:
    a, b = pair
    assert compare(a, b) == old_compare(a, b)
    assert compare(b, a) == old_compare(b, a)


def test_the_declared_levels_are_those_of_the_old_if_chain_on_the_synthetic_population() -> None:
    """Every candidate pair blocking finds in a synthetic population, and random pairs; every
    weighted level is reached, so the agreement is not that of trivial pairs."""
    from adapters.evaluation.population import generate_population, source_record
    from mpi.matching.profile import profile_of
    from mpi.matching.training import pairs_by_rule

    people = [profile_of(source_record(r)) for r in generate_population(1500, seed=4)]
    people = [p for p in people if not p.fictitious]
    pairs = set().union(*pairs_by_rule(people, 500).values())
    rng = random.Random(5)
    pairs.update(tuple(rng.sample(range(len(people)), 2)) for _ in range(20_000))
    reached: dict[str, set[str]] = defaultdict(set)
    for i, j in sorted(pairs):
        levels = compare(people[i], people[j])
        assert levels == old_compare(people[i], people[j]), (people[i], people[j])
        for name, level in levels.items():
            reached[name].add(level)
    # (every record of the population has a family name and a birth date: no missing level)
    assert all(reached[name] >= set(levels) for name, levels in OLD_FIELD_LEVELS.items())


@pytest.mark.parametrize("field, a, b, level", [
    ("family_name", profile(birth=None), profile(), MISSING),
    ("family_name", profile(birth="De la Fontaine"), profile(birth="DELAFONTAINE"), EXACT),
    ("family_name", profile(birth="DUPONT", used="MARTIN"), profile(birth="MARTIN"), CLOSE),
    ("family_name", profile(birth=None, used="MARTIN"), profile(birth=None, used="MARTIN"),
     CLOSE),
    ("family_name", profile(birth="ZIMMERMANN"), profile(birth="ZIMMERMAN"), CLOSE),
    ("family_name", profile(birth="RENAULT"), profile(birth="RENAUD"), CLOSE),
    ("family_name", profile(birth="MARTIN"), profile(birth="DUPONT-MARTIN"), CLOSE),
    ("family_name", profile(birth="MARTIN-DUPONT"), profile(birth="MARTIN-DURAND"), FAR),
    ("family_name", profile(birth="MARTIN"), profile(birth="KOWALSKI"), FAR),
    ("given_name", profile(given=()), profile(), MISSING),
    ("given_name", profile(given=("LUCAS", "MICKAEL")), profile(given=("LUCAS",)), EXACT),
    ("given_name", profile(given=("LUCAS", "MICKAEL")), profile(given=("LUCAS", "LOUIS")), CLOSE),
    ("given_name", profile(given=("JEAN", "PAUL")), profile(given=("PAUL", "JEAN")), CLOSE),
    ("given_name", profile(given=("LOUISE",)), profile(given=("YASMINE", "LOUISE")), CLOSE),
    ("given_name", profile(given=("HELENE",)), profile(given=("HELENA",)), CLOSE),
    ("given_name", profile(given=("HELENE",)), profile(given=("CLAIRE",)), FAR),
    ("birth_date", profile(born=None), profile(), MISSING),
    ("birth_date", profile(born=date(1975, 6, 14)), profile(born=date(1975, 6, 14)), EXACT),
    ("birth_date", profile(born=date(1975, 6, 14)), profile(born=date(1975, 1, 1)), CLOSE),
    ("birth_date", profile(born=date(1975, 6, 4)), profile(born=date(1975, 4, 6)), CLOSE),
    ("birth_date", profile(born=date(1980, 6, 14)), profile(born=date(1908, 6, 14)), CLOSE),
    ("birth_date", profile(born=date(1998, 8, 13)), profile(born=date(2025, 9, 25)), FAR),
    ("sex", profile(sex=None), profile(), MISSING),
    ("sex", profile(sex="F"), profile(sex="M"), FAR),
    ("birthplace", profile(birthplace="54395"), profile(birthplace="54395"), EXACT),
    ("birthplace", profile(birthplace="54395"), profile(birthplace="54001"), CLOSE),
    ("birthplace", profile(birthplace="97105"), profile(birthplace="97209"), FAR),
    ("birthplace", profile(birthplace="54395"), profile(birthplace=None), MISSING),
    ("postcode", profile(postcode="54000"), profile(postcode="54000"), EXACT),
    ("phone", profile(phone="0612345678"), profile(phone="0387000000"), FAR),
])
def test_each_branch_of_each_field(field: str, a: MatchProfile, b: MatchProfile, level: str
                                   ) -> None:
    assert compare(a, b)[field] == level == old_compare(a, b)[field]


# -- the declarations --------------------------------------------------------------------------


def test_the_level_table_is_read_off_the_declarations() -> None:
    assert FIELD_LEVELS == OLD_FIELD_LEVELS
    assert FIELDS == tuple(OLD_FIELD_LEVELS) == tuple(c.field for c in COMPARISONS)
    for comparison in COMPARISONS:
        assert comparison_of(comparison.field) is comparison
        assert all(level.description for level in comparison.levels)
        assert comparison.level(CLOSE if CLOSE in comparison.weighted_levels else EXACT)


def test_a_comparison_without_missing_first_or_an_else_level_last_is_refused() -> None:
    missing = Level(MISSING, lambda a, b: False, "nothing")
    exact = Level(EXACT, lambda a, b: a == b, "same")
    far = Level(FAR, otherwise, "other")
    Comparison("x", (missing, exact, far), "fine")
    with pytest.raises(ValueError):
        Comparison("x", (exact, far), "no missing level")
    with pytest.raises(ValueError):
        Comparison("x", (missing, exact, Level(FAR, lambda a, b: a != b, "other")), "no else")
    with pytest.raises(ValueError):
        Comparison("x", (missing, exact, exact, far), "twice exact")
    with pytest.raises(KeyError):
        comparison_of("x")
