"""The seeded synthetic population used to evaluate record linkage
(adapters/evaluation/population.py), and its ADT^A28 through the one ER7 writer."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from adapters.evaluation.population import (
    SourceRow,
    generate_population,
    main,
    pairs_of_same_person,
    read_csv,
    write_csv,
)
from adapters.evaluation.replay import pid_segment
from adapters.evaluation.tables import (
    AUTHORITIES,
    CITY_POSTCODES,
    ERROR_KINDS,
    FAMILY_NAMES,
    GIVEN_NAMES,
    PERSON_KINDS,
    RECORD_TAGS,
    REFERENCE_DATE,
)
from adapters.hl7v2.er7 import parse
from adapters.hl7v2.pid import record_data_from_pid
from mpi.model import Identifier
from mpi.normalize import family_name_key
from mpi.normalize import is_valid_nir as project_is_valid_nir

NAME_ERRORS = frozenset({"typo", "accent", "truncated", "used_as_birth", "given_order",
                         "given_first"})
DATE_ERRORS = frozenset({"date_swap", "date_0101", "date_typo"})
IPP_FORMATS = {
    "CHRU": re.compile(r"\d{8}"),
    "ICL": re.compile(r"I\d{7}"),
    "MRUN": re.compile(r"\d{7}"),
    "CCEG": re.compile(r"C\d{6}"),
}


@pytest.fixture(scope="module")
def population() -> list[SourceRow]:
    return generate_population(5000, seed=2026)


def by_person(rows: list[SourceRow]) -> dict[str, list[SourceRow]]:
    persons: dict[str, list[SourceRow]] = defaultdict(list)
    for row in rows:
        persons[row.person_key].append(row)
    return persons


def clean(row: SourceRow) -> bool:
    """No error touching the names or the birth date."""
    return not (set(row.errors) & (NAME_ERRORS | DATE_ERRORS))


def age(born: date) -> int:
    on = REFERENCE_DATE
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def reference_key(first13: str) -> int:
    digits = first13[:5] + {"2A": "19", "2B": "18"}.get(first13[5:7], first13[5:7]) + first13[7:]
    return 97 - int(digits) % 97


def osa_distance(a: str, b: str) -> int:
    """Edit distance counting a transposition of neighbours as one edit."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


# -- determinism ---------------------------------------------------------------------------


def test_a_seed_always_gives_the_same_rows_and_another_seed_other_rows() -> None:
    first = generate_population(600, seed=3)
    assert generate_population(600, seed=3) == first
    assert generate_population(600, seed=4) != first


def test_generation_leaves_the_global_random_state_alone() -> None:
    random.seed(99)
    state = random.getstate()
    generate_population(200, seed=1)
    assert random.getstate() == state


@pytest.mark.parametrize("persons", [0, 1, 7, 150])
def test_the_population_has_exactly_the_persons_asked_for(persons: int) -> None:
    rows = generate_population(persons, seed=5)
    assert len({row.person_key for row in rows}) == persons


def test_a_negative_population_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_population(-1)


# -- identifiers ---------------------------------------------------------------------------


def test_every_ins_is_a_valid_nir_consistent_with_the_traits(population: list[SourceRow]) -> None:
    qualified = [row for row in population if row.ins is not None]
    assert qualified and all(row.qualified for row in qualified)
    for row in qualified:
        ins = row.ins
        assert ins is not None and len(ins) == 15
        assert int(ins[13:]) == reference_key(ins[:13])
        assert project_is_valid_nir(ins)
        assert row.birth_date is not None and row.birthplace is not None
        assert ins[0] == {"M": "1", "F": "2"}[row.sex or ""]
        assert ins[1:3] == f"{row.birth_date.year % 100:02d}"
        assert ins[3:5] == f"{row.birth_date.month:02d}"
        assert ins[5:10] == row.birthplace
        assert 1 <= int(ins[10:13]) <= 999


def test_corsican_and_foreign_birthplaces_give_valid_nirs(population: list[SourceRow]) -> None:
    nirs = [row.ins for row in population if row.ins]
    corsican = [ins for ins in nirs if ins[5:7] in ("2A", "2B")]
    abroad = [ins for ins in nirs if ins[5:7] == "99"]
    assert corsican and abroad
    assert all(project_is_valid_nir(ins) for ins in corsican + abroad)


def test_ipps_are_unique_in_each_establishment_and_follow_its_format(
        population: list[SourceRow]) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for row in population:
        assert IPP_FORMATS[row.authority].fullmatch(row.local_id), row
        assert row.local_id not in seen[row.authority]
        seen[row.authority].add(row.local_id)
    assert set(seen) == set(AUTHORITIES)


def test_a_person_has_one_ins_and_no_two_persons_share_one(population: list[SourceRow]) -> None:
    ins_of: dict[str, set[str]] = defaultdict(set)
    owner: dict[str, set[str]] = defaultdict(set)
    for row in population:
        if row.qualified:
            assert row.ins is not None
            ins_of[row.person_key].add(row.ins)
            owner[row.ins].add(row.person_key)
        else:
            assert row.ins is None
    assert all(len(values) == 1 for values in ins_of.values())
    assert all(len(keys) == 1 for keys in owner.values())


# -- scenarios -----------------------------------------------------------------------------


def test_kind_labels_are_known(population: list[SourceRow]) -> None:
    for row in population:
        scenario, *rest = row.labels
        assert scenario in PERSON_KINDS
        assert all(label in RECORD_TAGS or label in ERROR_KINDS for label in rest)
    scenarios = {row.scenario for row in population}
    assert scenarios == set(PERSON_KINDS)


def test_twins_share_name_birth_and_address_but_not_first_given_name_nor_ins(
        population: list[SourceRow]) -> None:
    twin_rows = [row for row in population if row.scenario == "twin" and clean(row)]
    persons = {row.person_key for row in population if row.scenario == "twin"}
    assert len(persons) >= 20 and len(persons) % 2 == 0
    groups: dict[tuple[str | None, date | None], dict[str, SourceRow]] = defaultdict(dict)
    for row in twin_rows:
        groups[(row.birth_family_name, row.birth_date)][row.person_key] = row
    pairs = [list(g.values()) for g in groups.values() if len(g) == 2]
    assert len(pairs) >= 0.6 * len(persons) / 2
    for first, second in pairs:
        assert first.given_names[0] != second.given_names[0]
        assert (first.street, first.city) == (second.street, second.city) or \
            None in (first.street, second.street) or "old_address" in first.errors + second.errors
    ins_by_person = {row.person_key: row.ins for row in population
                     if row.scenario == "twin" and row.qualified}
    for first, second in pairs:
        a, b = ins_by_person.get(first.person_key), ins_by_person.get(second.person_key)
        if a and b:
            assert a != b and a[5:10] == b[5:10] and a[1:5] == b[1:5]


def test_homonyms_are_different_persons_with_the_same_name_and_birth_year(
        population: list[SourceRow]) -> None:
    groups: dict[tuple[str | None, str], dict[str, SourceRow]] = defaultdict(dict)
    for row in population:
        if row.scenario == "homonym" and clean(row) and row.given_names:
            groups[(row.birth_family_name, row.given_names[0])][row.person_key] = row
    pairs = [list(g.values()) for g in groups.values() if len(g) == 2]
    assert len(pairs) >= 8
    same_day = 0
    for first, second in pairs:
        assert first.birth_date is not None and second.birth_date is not None
        assert first.birth_date.year == second.birth_date.year
        if first.birth_date == second.birth_date:
            same_day += 1
            if first.birthplace and second.birthplace:
                assert first.birthplace != second.birthplace
    assert 0 < same_day < len(pairs)


def test_unidentified_patients_are_fictitious_and_each_a_person_of_its_own(
        population: list[SourceRow]) -> None:
    unidentified = [row for row in population if row.scenario == "unidentified"]
    assert unidentified
    records_of: dict[str, int] = defaultdict(int)
    for row in population:
        records_of[row.person_key] += 1
    keys = [row.person_key for row in unidentified]
    assert len(set(keys)) == len(keys)
    for row in unidentified:
        assert row.reliability == ("FICT",)
        assert records_of[row.person_key] == 1
        assert row.authority in ("CHRU", "CCEG")
        assert row.ins is None and row.birthplace is None
        assert re.fullmatch(r"(INCONNU|X)\d{4}", row.birth_family_name or "")
        assert row.given_names in ((), ("X",))
        assert row.birth_date in (None, date(1900, 1, 1))
    for row in population:
        if "FICT" in row.reliability:
            assert row.scenario == "unidentified"
    chru_cceg = sum(1 for row in population if row.authority in ("CHRU", "CCEG"))
    assert 0.002 < len(unidentified) / chru_cceg < 0.01


def test_newborns_may_be_registered_first_without_given_name_then_named_at_the_chru(
        population: list[SourceRow]) -> None:
    persons = by_person(population)
    provisional = [row for row in population if "provisional" in row.labels]
    assert provisional
    for row in provisional:
        assert row.authority == "MRUN" and row.given_names == () and row.ins is None
        prefix, _, family = (row.birth_family_name or "").partition(" ")
        assert prefix in ("BB", "NOUVEAU-NE")
        named = [r for r in persons[row.person_key] if r.authority == "CHRU"]
        assert len(named) == 1 and named[0].given_names
        if clean(named[0]):
            assert named[0].birth_family_name == family
    for row in population:
        if row.scenario == "newborn" and "date_typo" not in row.errors and row.birth_date:
            assert 0 <= (REFERENCE_DATE - row.birth_date).days < 731
            assert "MRUN" in {r.authority for r in persons[row.person_key]}


def test_married_women_show_their_used_name_at_some_establishments_only(
        population: list[SourceRow]) -> None:
    persons = by_person(population)
    married = [key for key, rows in persons.items() if rows[0].scenario == "married"]
    assert married
    mixed = 0
    for key in married:
        rows = persons[key]
        assert all(row.sex in ("F", None) for row in rows)
        used = {row.used_family_name is not None for row in rows}
        mixed += used == {True, False}
    assert mixed > 0
    assert all(row.used_family_name is None for row in population
               if row.scenario not in ("married", "newborn"))


def test_the_maternity_sees_only_women_of_15_to_50_and_newborns(
        population: list[SourceRow]) -> None:
    persons = by_person(population)
    for rows in persons.values():
        if rows[0].scenario == "newborn" or "MRUN" not in {r.authority for r in rows}:
            continue
        sexes = {r.sex for r in rows if r.sex}
        births = {r.birth_date for r in rows if r.birth_date and clean(r)}
        assert sexes <= {"F"}
        assert all(15 <= age(born) <= 50 for born in births)


def test_cancer_centre_patients_are_adults_mostly_over_40(population: list[SourceRow]) -> None:
    ages = [age(r.birth_date) for r in population
            if r.authority == "ICL" and r.birth_date and clean(r)]
    assert ages and min(ages) >= 17
    assert sum(a >= 40 for a in ages) / len(ages) > 0.8


def test_most_persons_are_known_at_one_or_two_establishments(
        population: list[SourceRow]) -> None:
    counts = [len({r.authority for r in rows}) for rows in by_person(population).values()]
    assert max(counts) <= 4
    assert sum(c <= 2 for c in counts) / len(counts) > 0.8


def test_addresses_phones_and_birthplaces_are_plausible(population: list[SourceRow]) -> None:
    for row in population:
        if row.city is not None:
            assert row.postcode in CITY_POSTCODES[row.city]
            assert row.street
        else:
            assert row.street is None and row.postcode is None
        if row.phone is not None:
            assert re.fullmatch(r"0[367]\d{8}", row.phone)
        if row.birthplace is not None:
            assert re.fullmatch(r"(\d{5}|2[AB]\d{3})", row.birthplace)
    places = [row.birthplace for row in population if row.birthplace]
    assert sum(p.startswith("54") for p in places) / len(places) > 0.5
    assert any(p.startswith("99") for p in places)
    assert any(p[:2] in ("57", "88", "55") for p in places)


def test_name_lists_are_large_skewed_and_french() -> None:
    assert len(FAMILY_NAMES) == len(set(FAMILY_NAMES)) >= 300
    for name in ("MARTIN", "SCHMITT", "LEFÈVRE", "N'DIAYE", "DE LA FONTAINE", "MARTIN-DUPONT",
                 "D'ARGENT", "ZIMMERMANN", "KOWALSKI", "NGUYEN", "DA SILVA", "THIRIET"):
        assert name in FAMILY_NAMES
    for sex in ("M", "F"):
        assert len(GIVEN_NAMES[sex]) == len(set(GIVEN_NAMES[sex])) >= 150
        assert sum("-" in name for name in GIVEN_NAMES[sex]) >= 10
    assert {"Jean-Pierre", "Marie-Claire", "Anne-Sophie"} <= set(GIVEN_NAMES["M"]) | set(
        GIVEN_NAMES["F"])
    rows = generate_population(3000, seed=12)
    births = [row.birth_family_name for row in rows if row.qualified]
    assert births.count("MARTIN") > 5 * max(births.count("ZIMMERMANN"), 1)


# -- qualification and errors --------------------------------------------------------------


def test_about_half_of_the_records_carry_a_qualified_ins(population: list[SourceRow]) -> None:
    share = sum(row.qualified for row in population) / len(population)
    assert 0.40 <= share <= 0.60


def test_only_unqualified_records_have_errors_at_the_stated_rate(
        population: list[SourceRow]) -> None:
    unqualified = [row for row in population
                   if not row.qualified and "FICT" not in row.reliability]
    with_errors = [row for row in unqualified if row.errors]
    assert 0.10 <= len(with_errors) / len(unqualified) <= 0.20
    for row in population:
        if row.qualified:
            assert row.errors == () and row.reliability == ("VALI",)
        elif "FICT" not in row.reliability:
            assert row.reliability in (("PROV",), ("PROV", "DOUT"))
    kinds = {kind for row in with_errors for kind in row.errors}
    assert {"typo", "accent", "given_first", "date_swap", "date_0101", "date_typo",
            "no_phone", "no_sex"} <= kinds


def test_errors_differ_from_the_qualified_identity_as_their_label_says(
        population: list[SourceRow]) -> None:
    truth = {row.person_key: row for row in population if row.qualified}
    checked: dict[str, int] = defaultdict(int)
    for row in population:
        reference = truth.get(row.person_key)
        if reference is None or not row.errors or reference.birth_date is None:
            continue
        errors = set(row.errors)
        assert row.birth_date is not None or "date_typo" not in errors
        if errors == {"typo"}:
            assert osa_distance(row.birth_family_name or "",
                                reference.birth_family_name or "") == 1
        if "date_swap" in errors:
            born = reference.birth_date
            assert row.birth_date == date(born.year, born.day, born.month)
        if "date_0101" in errors:
            assert row.birth_date == date(reference.birth_date.year, 1, 1)
        if "date_typo" in errors:
            assert row.birth_date != reference.birth_date
        given_untouched = not errors & {"accent", "latin1", "given_typo", "names_swapped",
                                         "cut20"}
        if "given_first" in errors and given_untouched:
            assert row.given_names == reference.given_names[:1]
        if "given_dropped" in errors and given_untouched:
            assert row.given_names == reference.given_names[1:]
        if errors == {"given_typo"}:
            assert osa_distance(row.given_names[0], reference.given_names[0]) == 1
        if errors == {"names_swapped"}:
            assert row.birth_family_name == reference.given_names[0].upper()
            assert row.given_names[0].upper() == reference.birth_family_name
        if errors == {"cut20"}:
            assert len(row.birth_family_name or "") <= 20 or \
                len(" ".join(row.given_names)) <= 20
        if errors == {"separators"}:
            assert row.birth_family_name != reference.birth_family_name
            assert family_name_key(row.birth_family_name) == \
                family_name_key(reference.birth_family_name)
        if "no_sex" in errors:
            assert row.sex is None
        for error in errors:
            checked[error] += 1
    assert checked["typo"] and checked["date_swap"] and checked["given_first"]
    assert checked["given_typo"] and checked["names_swapped"] and checked["given_dropped"]


# -- ground truth, CSV, HL7 ----------------------------------------------------------------


def test_pairs_of_same_person_match_a_brute_force_computation() -> None:
    rows = generate_population(500, seed=21)
    expected = {(i, j) for i in range(len(rows)) for j in range(i + 1, len(rows))
                if rows[i].person_key == rows[j].person_key}
    assert expected
    assert pairs_of_same_person(rows) == expected


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    rows = generate_population(400, seed=9)
    rows.append(SourceRow(
        person_key="P-EDGE", authority="CCEG", local_id="C000001",
        birth_family_name='D\'ARGENT "LE, JEUNE"', used_family_name=None, given_names=(),
        birth_date=None, sex=None, birthplace=None, street=None, city=None, postcode=None,
        phone=None, ins=None, reliability=(), kind="plain"))
    path = tmp_path / "population.csv"
    write_csv(rows, path)
    assert read_csv(path) == rows


def test_a_file_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError):
        read_csv(path)


def to_pid_fields(row: SourceRow) -> dict[str, str]:
    """The non-empty fields of the row's PID, by field number."""
    registry = load_authorities(DEFAULT_AUTHORITIES_FILE)
    return {str(number): text for number, text in enumerate(pid_segment(row, registry).split("|"))
            if number >= 2 and text}


def test_pid_fields_escape_the_hl7_separators() -> None:
    row = SourceRow(
        person_key="P1", authority="ICL", local_id="I0000001",
        birth_family_name="A|B^C", used_family_name="D~E", given_names=("F&G", "H\\I"),
        birth_date=date(1980, 2, 3), sex="F", birthplace="54395", street="1 rue A^B",
        city="Nancy", postcode="54000", phone="0383000000", ins=None,
        reliability=("PROV", "DOUT"), kind="plain")
    fields = to_pid_fields(row)
    assert fields["3"] == "I0000001^^^ICL&1.2.250.1.999.54.2&ISO^PI"
    assert fields["5"] == ("A\\F\\B\\S\\C^F\\T\\G^F\\T\\G H\\E\\I^^^^L"
                           "~D\\R\\E^F\\T\\G^^^^^D")
    assert fields["7"] == "19800203"
    assert fields["11"] == "1 rue A\\S\\B^^Nancy^^54000^FRA^H"
    assert fields["32"] == "PROV~DOUT"


def test_pid_fields_read_back_through_the_feed_parser(population: list[SourceRow]) -> None:
    registry = load_authorities(DEFAULT_AUTHORITIES_FILE)
    samples = [row for row in population if row.qualified and row.used_family_name][:5]
    samples += [row for row in population if not row.qualified][:20]
    samples += [row for row in population if row.scenario == "unidentified"][:3]
    tricky = SourceRow(
        person_key="P1", authority="MRUN", local_id="0000001", birth_family_name="O|B^R~I&E\\N",
        used_family_name=None, given_names=("Anne-Sophie",), birth_date=date(1990, 1, 2),
        sex="F", birthplace="2A004", street="3 rue du 8 Mai 1945", city="Toul", postcode="54200",
        phone=None, ins=None, reliability=("PROV",), kind="plain")
    for row in [*samples, tricky]:
        fields = to_pid_fields(row)
        segment = ["PID", "1"] + [""] * 31
        for number, text in fields.items():
            segment[int(number)] = text
        message = ("MSH|^~\\&|HIS|" + row.authority + "|MPI|GCS|20240304080000||ADT^A28^ADT_A05|"
                   "1|P|2.5\r" + "|".join(segment))
        pid = parse(message).first("PID")
        assert pid is not None
        data = record_data_from_pid(pid, registry, row.authority)
        assert data.identifier == Identifier(row.authority, row.local_id)
        assert data.ins == (Identifier("INS-NIR", row.ins) if row.ins else None)
        assert data.reliability == row.reliability
        demographics = data.demographics
        assert demographics.get("birth_family_name") == row.birth_family_name
        assert demographics.get("used_family_name") == row.used_family_name
        assert tuple(demographics.get("given_names") or ()) == row.given_names
        assert demographics.get("birth_date") == row.birth_date
        assert demographics.get("sex") == row.sex
        assert demographics.get("birthplace") == row.birthplace
        assert demographics.get("city") == row.city
        assert demographics.get("postcode") == row.postcode
        assert demographics.get("street") == row.street
        assert demographics.get("phone") == row.phone


def test_the_command_line_writes_the_file_and_prints_the_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "population.csv"
    assert main(["--persons", "300", "--seed", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "persons: 300" in printed
    for word in ("records:", "CHRU", "qualified", "twins", "homonyms", "unidentified",
                 "records with errors"):
        assert word in printed
    assert read_csv(out) == generate_population(300, seed=4)
