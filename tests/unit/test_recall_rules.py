"""The comparison rules that tolerate the errors of French feeds, and the safety rules they
must leave intact: keyboard slips, first and family names swapped, a corroborated 01/01, and
twins still never linked; the generator's error model and the evaluation's table of causes."""

from __future__ import annotations

from datetime import date

import pytest

from adapters.evaluation.population import SourceRow, generate_population, summarize
from adapters.evaluation.replay import CauseCount, cause_lines, pair_causes
from mpi.matching.comparisons import CLOSE, EXACT, FAR, compare, names_swapped
from mpi.matching.keyboard import are_neighbours, keyboard_slip
from mpi.matching.profile import MatchProfile
from mpi.matching.vetoes import looks_like_twins, unknown_day_corroborated
from mpi.normalize import family_name_key, family_name_parts, given_names_list
from tests.identity_env import TRAITS, IdentityEnv


@pytest.fixture
def env() -> IdentityEnv:
    return IdentityEnv()


def profile(birth: str = "ZIMMERMANN", given: tuple[str, ...] = ("HELENE",),
            born: date | None = date(1975, 6, 14), sex: str | None = "F") -> MatchProfile:
    return MatchProfile(family_name_key(birth), family_name_parts(birth), "", (),
                        given_names_list(given), born, sex, None, None, None, None, False)


# -- keyboard slips ------------------------------------------------------------------------


def test_azerty_neighbours_are_the_keys_around_a_letter() -> None:
    assert are_neighbours("A", "Z") and are_neighbours("A", "Q") and are_neighbours("R", "G")
    assert are_neighbours("M", "P") and not are_neighbours("A", "E")
    assert not are_neighbours("W", "Y")


@pytest.mark.parametrize("a, b", [
    ("MULLER", "MUPLER"),   # a neighbouring key (L, P)
    ("MARTIN", "MATRIN"),   # two letters swapped
    ("ANNIE", "ANIE"),      # a doubled letter struck once
    ("COLIN", "COLLIN"),    # struck twice
    ("MARTIN", "MARTYIN"),  # a neighbour struck with the intended key (Y beside T)
    ("JEAN", "JRAN"),
    ("ROSE", "GOSE"),       # the first letter too
])
def test_one_slip_apart(a: str, b: str) -> None:
    assert keyboard_slip(a, b) and keyboard_slip(b, a)


@pytest.mark.parametrize("a, b", [
    ("LEA", "LEO"),           # too short to tell a slip from another name
    ("MARTIN", "MARTIN"),     # equal is no slip
    ("MARTIN", "MARTEN"),     # I and E are not neighbours
    ("MARTIN", "MRTINA"),     # two edits
    ("MARTIN", "MARTZIN"),    # Z is beside neither R nor T
    ("BERNARD", "BERTRAND"),
])
def test_not_a_slip(a: str, b: str) -> None:
    assert not keyboard_slip(a, b)


def test_a_neighbour_inserted_is_a_slip_only_when_asked_for() -> None:
    # LOUNA and LUNA: O is beside L. A slip when comparing names, two names for twins.
    assert keyboard_slip("LOUNA", "LUNA")
    assert not keyboard_slip("LOUNA", "LUNA", neighbour_insertions=False)
    assert keyboard_slip("ANNIE", "ANIE", neighbour_insertions=False)


def test_a_slip_in_the_family_or_given_name_is_the_close_level() -> None:
    assert compare(profile("MULLER"), profile("MUPLER"))["family_name"] == CLOSE
    assert compare(profile("COLIN"), profile("XOLIN"))["family_name"] == CLOSE
    assert compare(profile(given=("ROSE",)), profile(given=("GOSE",)))["given_name"] == CLOSE
    assert compare(profile(given=("ROSE",)), profile(given=("MARIE",)))["given_name"] == FAR


# -- names swapped -------------------------------------------------------------------------


def test_first_and_family_names_entered_in_each_other_s_field_are_close_on_both() -> None:
    right, swapped = profile("ZIEGLER", ("DAVID",)), profile("DAVID", ("ZIEGLER",))
    assert names_swapped(right, swapped) and names_swapped(swapped, right)
    levels = compare(right, swapped)
    assert (levels["family_name"], levels["given_name"]) == (CLOSE, CLOSE)
    assert not names_swapped(right, right)
    assert not names_swapped(right, profile("DAVID", ("PAUL",)))
    # A compound given name against a family name with a particle or hyphen.
    assert names_swapped(profile("LE GALL", ("JEAN-PIERRE",)), profile("JEAN PIERRE", ("LE-GALL",)))


def test_swapped_names_link_and_twins_are_still_twins(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **dict(TRAITS, birth_family_name="HÉLÈNE",
                                    given_names=("Zimmermann", "Marie")))
    assert env.person("ICL", "2") == env.person("CHRU", "1")
    env.register("MRUN", "3", **dict(TRAITS, given_names=("Claire",)))
    assert env.person("MRUN", "3") != env.person("CHRU", "1")


# -- twins and slips ------------------------------------------------------------------------


def test_a_slip_in_a_twin_s_first_name_is_not_another_twin() -> None:
    a, b = profile(given=("JEAN",), sex="M"), profile(given=("JRAN",), sex="M")
    assert not looks_like_twins(compare(a, b), a, b)
    a, b = profile(given=("ROSE",)), profile(given=("GOSE",))
    assert not looks_like_twins(compare(a, b), a, b)
    # Another first name altogether is another twin.
    a, b = profile(given=("ROSE",)), profile(given=("ROMANE",))
    assert looks_like_twins(compare(a, b), a, b)
    # JEAN and JEANNE of opposite sexes stay twins.
    a, b = profile(given=("JEAN",), sex="M"), profile(given=("JEANNE",), sex="F")
    assert looks_like_twins(compare(a, b), a, b)


def test_a_typo_in_the_given_name_links_and_a_twin_never_does(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **dict(TRAITS, given_names=("Hélènr", "Marie")))  # R beside E
    assert env.person("ICL", "2") == env.person("CHRU", "1")
    env.register("MRUN", "3", **dict(TRAITS, given_names=("Louise",)))
    assert env.person("MRUN", "3") != env.person("CHRU", "1")
    assert any(task.evidence["twins"] for task in env.open_tasks())


# -- the 01/01 of an unknown day --------------------------------------------------------------


def levels(**changes: str) -> dict[str, str]:
    base = {"family_name": EXACT, "given_name": EXACT, "birth_date": CLOSE, "sex": EXACT,
            "birthplace": EXACT, "postcode": EXACT, "phone": EXACT}
    return {**base, **changes}


def test_an_unknown_day_is_made_up_for_only_by_everything_else() -> None:
    assert unknown_day_corroborated(levels())
    assert unknown_day_corroborated(levels(birthplace="missing"))
    assert unknown_day_corroborated(levels(postcode=FAR))
    assert not unknown_day_corroborated(levels(birthplace="missing", postcode="missing"))
    for field in ("family_name", "given_name", "sex", "phone"):
        assert not unknown_day_corroborated(levels(**{field: CLOSE}))
        assert not unknown_day_corroborated(levels(**{field: "missing"}))


def test_a_namesake_born_the_same_year_is_not_linked_on_a_01_01(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    # Same names, year, birthplace and postcode, another phone: two persons until proven.
    env.register("ICL", "2", **dict(TRAITS, birth_date=date(1975, 1, 1), phone="0677777777"))
    assert env.person("ICL", "2") != env.person("CHRU", "1")
    [task] = env.open_tasks()
    assert task.evidence["partial_birth_date"] is True


# -- the generator's error model ------------------------------------------------------------


@pytest.fixture(scope="module")
def rows() -> list[SourceRow]:
    return generate_population(4000, seed=19)


def test_every_error_kind_of_french_feeds_occurs(rows: list[SourceRow]) -> None:
    kinds = {kind for row in rows for kind in row.errors}
    assert {"typo", "given_typo", "accent", "latin1", "truncated", "used_as_birth",
            "names_swapped", "given_order", "given_first", "given_dropped", "date_swap",
            "date_0101", "date_typo"} <= kinds
    assert any("duplicate" in row.labels for row in rows)  # a second record at one site


def test_a_latin1_system_mangles_what_it_cannot_hold(rows: list[SourceRow]) -> None:
    mangled = [row for row in rows if "latin1" in row.errors]
    texts = [" ".join([row.birth_family_name or "", row.used_family_name or "",
                       *row.given_names]) for row in mangled]
    assert texts and all("Ã" in text or "?" in text for text in texts)


def test_the_error_factor_multiplies_the_error_rates() -> None:
    once = summarize(generate_population(3000, seed=23))
    twice = summarize(generate_population(3000, seed=23, error_factor=2.0))
    none = summarize(generate_population(3000, seed=23, error_factor=0.0))
    assert none.with_errors == 0
    ratio = twice.with_errors / once.with_errors
    assert 1.7 <= ratio <= 2.3
    with pytest.raises(ValueError):
        generate_population(10, error_factor=-1.0)


# -- the causes of the missed pairs ------------------------------------------------------------


def test_a_pair_counts_under_its_ins_its_establishments_and_each_error(
        rows: list[SourceRow]) -> None:
    qualified = next(row for row in rows if row.qualified)
    erroneous = next(row for row in rows if not row.qualified and len(row.errors) >= 1
                     and row.authority != qualified.authority)
    causes = pair_causes(qualified, erroneous)
    assert causes[:2] == ["ins:one", "two establishments"]
    assert causes[2:] == [f"error:{kind}" for kind in sorted(erroneous.errors)]
    assert pair_causes(qualified, qualified)[:2] == ["ins:both", "same establishment"]
    clean = next(row for row in rows if not row.qualified and not row.errors)
    assert pair_causes(clean, clean) == ["ins:none", "same establishment", "error:none"]


def test_the_table_of_causes_puts_the_most_missed_first() -> None:
    lines = cause_lines({"error:typo": CauseCount(10, 4, 1), "ins:none": CauseCount(50, 8, 0),
                         "error:none": CauseCount(40, 0, 0)})
    assert lines[0].split() == ["cause", "pairs", "missed", "share", "missed", "w/", "review"]
    assert [line.split()[0] for line in lines[1:]] == ["ins:none", "error:typo", "error:none"]
    assert lines[2].split() == ["error:typo", "10", "4", "40.0%", "1"]


# -- what a latin-1 system did to the letters ------------------------------------------------


@pytest.mark.parametrize("mangled, meant", [
    ("VÃ©ronique", "Véronique"), ("BÃ‰RANGER", "BÉRANGER"), ("GaÃ«l", "Gaël"),
    ("FRANÃ‡OISE", "FRANÇOISE"), ("Véronique", "Véronique"), ("MARTIN", "MARTIN"),
    ("Ã", "Ã"), (None, None), ("", ""),
])
def test_letters_mangled_by_a_latin1_reading_are_put_back(mangled: str | None,
                                                         meant: str | None) -> None:
    from mpi.matching.profile import repaired

    assert repaired(mangled) == meant


def test_a_mangled_record_compares_as_the_one_it_was(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **dict(TRAITS, birth_family_name="BÉRANGER"))
    env.register("ICL", "2", **dict(TRAITS, birth_family_name="BÃ‰RANGER",
                                    given_names=("HÃ©lÃ¨ne", "Marie")))
    assert env.person("ICL", "2") == env.person("CHRU", "1")
    assert env.link_of("ICL", "2").evidence["fields"]["family_name"]["level"] == EXACT
