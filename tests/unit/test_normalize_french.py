"""Unit tests of the normalization of French identity traits (mpi.normalize)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpi.normalize import (
    birth_date_relation,
    department_of_insee,
    family_name_key,
    family_name_parts,
    first_given_name,
    fold,
    given_names_agree_any_order,
    given_names_list,
    is_placeholder_name,
    is_valid_nir,
    nir_key,
    normalize_insee,
    normalize_phone,
    normalize_postcode,
    normalize_sex,
    parse_birth_date,
    search_key,
)

# Accented and differently cased spellings of each ASCII letter, as they occur in French names.
ACCENTED = {
    "A": "AÀÂÄaàâä",
    "C": "CÇcç",
    "E": "EÉÈÊËeéèêë",
    "I": "IÎÏiîï",
    "O": "OÔÖoôö",
    "U": "UÙÛÜuùûü",
    "Y": "YŸyÿ",
}
SEPARATORS = ["-", " ", "'", "’", "–", " - ", "  "]
ascii_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=20)


@st.composite
def spelling_variant(draw: st.DrawFn, name: str) -> str:
    """A spelling of ``name`` with accents, case changes and separators between letters."""
    pieces = []
    for index, letter in enumerate(name):
        if index and draw(st.booleans()):
            pieces.append(draw(st.sampled_from(SEPARATORS)))
        pieces.append(draw(st.sampled_from(ACCENTED.get(letter, letter + letter.lower()))))
    return "".join(pieces)


# --- fold and search_key (existing behaviour) -------------------------------------------------


def test_fold_removes_accents_expands_ligatures_and_normalizes_separators() -> None:
    assert fold("Lefèvre-d'Œuf ") == "LEFEVRE D OEUF"
    assert fold("Cæcilia Strauß") == "CAECILIA STRAUSS"
    assert fold(None) == ""
    assert fold("") == ""


def test_fold_expands_accented_ligatures_and_the_capital_sharp_s() -> None:
    assert fold("Ǣ") == fold("ǽ") == "AE"
    assert fold("STRAẞE") == "STRASSE"
    assert fold(fold("Ǣ")) == fold("Ǣ")


def test_search_key_removes_spaces() -> None:
    assert search_key("Martin-Dupont") == search_key("MARTIN DUPONT") == "MARTINDUPONT"


@given(st.text())
def test_fold_is_idempotent(text: str) -> None:
    assert fold(fold(text)) == fold(text)


# --- NIR ----------------------------------------------------------------------------------------


def test_nir_key_of_a_metropolitan_body() -> None:
    assert nir_key("1800354395012") == 97 - 1800354395012 % 97 == 24


@pytest.mark.parametrize(
    ("body", "numeric_body"),
    [("180032A004123", "1800319004123"), ("180032B033123", "1800318033123")],
)
def test_corsican_nirs_are_valid_with_the_key_of_19_or_18(body: str, numeric_body: str) -> None:
    key = 97 - int(numeric_body) % 97
    assert is_valid_nir(f"{body}{key:02d}")
    assert not is_valid_nir(f"{body}{(key + 1) % 100:02d}")


def test_a_fifteen_digit_string_with_a_wrong_key_is_rejected() -> None:
    assert is_valid_nir("180035439501224")
    assert not is_valid_nir("180035439501225")
    assert not is_valid_nir("180035439501200")


@pytest.mark.parametrize("value", ["", "18003543950122", "1800354395012245", "18003543950X224"])
def test_malformed_nirs_are_rejected(value: str) -> None:
    assert not is_valid_nir(value)


# --- family names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variants",
    [
        ("MARTIN-DUPONT", "MARTIN DUPONT", "Martin–Dupont", "martin - dupont", "MARTINDUPONT"),
        ("D'ARGENT", "D ARGENT", "DARGENT", "d’Argent", "Dʼargent"),
        ("DE LA FONTAINE", "DE LAFONTAINE", "DELAFONTAINE", "de La Fontaine"),
        ("LEFÈVRE", "Lefevre", "LEFEVRE"),
        ("ŒUVRARD", "OEUVRARD"),
    ],
)
def test_family_name_key_is_the_same_for_every_spelling(variants: tuple[str, ...]) -> None:
    keys = {family_name_key(variant) for variant in variants}
    assert len(keys) == 1


def test_family_name_key_examples() -> None:
    assert family_name_key("Martin–Dupont") == "MARTINDUPONT"
    assert family_name_key("De La Fontaine") == "DELAFONTAINE"
    assert family_name_key(None) == ""
    assert family_name_key("") == ""
    assert family_name_key(" - ") == ""


@given(ascii_names.flatmap(lambda name: st.tuples(st.just(name), spelling_variant(name))))
def test_family_name_key_ignores_separators_case_and_accents(pair: tuple[str, str]) -> None:
    name, variant = pair
    assert family_name_key(variant) == family_name_key(name) == name


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("MARTIN-DUPONT", ("MARTIN", "DUPONT")),
        ("Martin Dupont", ("MARTIN", "DUPONT")),
        ("DE LA FONTAINE", ("FONTAINE",)),
        ("D'ARGENT", ("ARGENT",)),
        ("LE GALL", ("GALL",)),
        ("VAN DER BERG", ("BERG",)),
        ("DOS SANTOS", ("SANTOS",)),
        ("DI MARIA-DELLA ROSA", ("MARIA", "ROSA")),
        ("L'HERMITE", ("HERMITE",)),
        ("DELAFONTAINE", ("DELAFONTAINE",)),
        ("LE", ("LE",)),
        ("DE LA", ("DE", "LA")),
        ("", ()),
        (None, ()),
    ],
)
def test_family_name_parts(name: str | None, parts: tuple[str, ...]) -> None:
    assert family_name_parts(name) == parts


def test_a_name_used_at_one_site_is_a_part_of_the_compound_name_used_at_another() -> None:
    assert family_name_key("Martin") in family_name_parts("MARTIN-DUPONT")


# --- given names --------------------------------------------------------------------------------


def test_given_names_list_folds_each_item_and_keeps_compound_names_whole() -> None:
    assert given_names_list(["Jean-Pierre", "Éric"]) == ("JEAN-PIERRE", "ERIC")
    assert given_names_list(["JEAN PIERRE"]) == ("JEAN-PIERRE",)
    assert given_names_list(["Jean–Pierre", "jean -  pierre"]) == ("JEAN-PIERRE", "JEAN-PIERRE")
    assert given_names_list(["N'Golo"]) == ("NGOLO",)


def test_given_names_list_drops_empty_items() -> None:
    assert given_names_list(["", "Marie", "  ", "-", "Anne"]) == ("MARIE", "ANNE")
    assert given_names_list([]) == ()
    assert given_names_list(None) == ()


def test_a_lone_string_is_one_given_name() -> None:
    assert given_names_list("Marie-Claire") == ("MARIE-CLAIRE",)


def test_first_given_name() -> None:
    assert first_given_name(["", "Hélène", "Marie"]) == "HELENE"
    assert first_given_name(["jean pierre", "Paul"]) == "JEAN-PIERRE"
    assert first_given_name([]) == ""
    assert first_given_name(["", " "]) == ""


def test_given_names_agree_in_any_order() -> None:
    assert given_names_agree_any_order(["Jean", "Paul"], ["PAUL", "JEAN"])
    assert given_names_agree_any_order(["Jean-Paul"], ["JEAN PAUL"])
    assert not given_names_agree_any_order(["Jean", "Paul"], ["Jean"])
    assert not given_names_agree_any_order(["Jean-Paul"], ["Jean", "Paul"])
    assert not given_names_agree_any_order([], [])
    assert not given_names_agree_any_order([""], [" "])


# --- sex ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sex"),
    [
        ("M", "M"),
        ("m", "M"),
        ("1", "M"),
        (1, "M"),
        ("H", "M"),
        ("h", "M"),
        ("MASCULIN", "M"),
        ("Masculin", "M"),
        ("male", "M"),
        ("Male", "M"),
        (" M ", "M"),
        ("F", "F"),
        ("f", "F"),
        ("2", "F"),
        (2, "F"),
        ("FEMININ", "F"),
        ("Féminin", "F"),
        ("female", "F"),
        ("FEMALE", "F"),
        ("U", None),
        ("O", None),
        ("A", None),
        ("N", None),
        ("", None),
        (None, None),
        ("3", None),
        ("X", None),
        ("inconnu", None),
        (True, None),
    ],
)
def test_normalize_sex(value: str | int | None, sex: str | None) -> None:
    assert normalize_sex(value) == sex


# --- birth dates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "19800315",
        "1980-03-15",
        "15/03/1980",
        "15-03-1980",
        " 1980-03-15 ",
        date(1980, 3, 15),
        datetime(1980, 3, 15, 10, 30),
    ],
)
def test_parse_birth_date_reads_the_usual_formats(value: str | date) -> None:
    assert parse_birth_date(value) == date(1980, 3, 15)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "19800231",
        "1980-02-30",
        "31/04/1980",
        "00000101",
        "1980-13-01",
        "15/3/1980",
        "1980/03/15",
        "15.03.1980",
        "198003150",
        "abc",
        "1980-03-15T10:00",
        "１９８００３１５",
    ],
)
def test_parse_birth_date_rejects_unreadable_or_impossible_dates(value: str | None) -> None:
    assert parse_birth_date(value) is None


def test_parse_birth_date_returns_a_plain_date_for_a_datetime() -> None:
    parsed = parse_birth_date(datetime(1980, 3, 15, 10, 30))
    assert type(parsed) is date


@given(st.dates())
def test_parse_birth_date_round_trips_isoformat(day: date) -> None:
    assert parse_birth_date(day.isoformat()) == day


@given(st.dates())
def test_parse_birth_date_reads_the_compact_and_french_forms(day: date) -> None:
    y, m, d = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
    assert parse_birth_date(f"{y}{m}{d}") == day
    assert parse_birth_date(f"{d}/{m}/{y}") == day
    assert parse_birth_date(f"{d}-{m}-{y}") == day


@pytest.mark.parametrize(
    ("a", "b", "relation"),
    [
        (None, date(1980, 3, 15), "missing"),
        (date(1980, 3, 15), None, "missing"),
        (None, None, "missing"),
        (date(1980, 3, 15), date(1980, 3, 15), "exact"),
        (date(1980, 1, 1), date(1980, 3, 15), "unknown_day"),
        (date(1980, 3, 1), date(1980, 3, 15), "unknown_day"),
        (date(1980, 3, 15), date(1980, 1, 1), "unknown_day"),
        (date(1980, 1, 1), date(1981, 1, 1), "one_typo"),
        (date(1980, 3, 1), date(1980, 4, 15), "different"),
        (date(1980, 1, 1), date(1982, 3, 15), "different"),
        (date(1980, 3, 12), date(1980, 12, 3), "swapped"),
        (date(1980, 3, 12), date(1981, 12, 3), "different"),
        (date(1980, 3, 15), date(1980, 3, 16), "one_typo"),
        (date(1980, 3, 15), date(1980, 3, 25), "one_typo"),
        (date(1980, 3, 12), date(1980, 3, 21), "one_typo"),
        (date(1980, 3, 15), date(1980, 8, 15), "one_typo"),
        (date(1980, 3, 15), date(1980, 3, 27), "different"),
        (date(1980, 3, 15), date(1980, 4, 16), "different"),
        (date(1980, 3, 15), date(1986, 3, 15), "one_typo"),
        (date(1980, 3, 15), date(1908, 3, 15), "one_typo"),
        (date(1980, 3, 15), date(1890, 3, 15), "one_typo"),
        (date(1980, 3, 15), date(1975, 3, 15), "different"),
        (date(1980, 3, 15), date(1986, 3, 16), "different"),
        (date(1980, 3, 15), date(1990, 5, 20), "different"),
    ],
)
def test_birth_date_relation(a: date | None, b: date | None, relation: str) -> None:
    assert birth_date_relation(a, b) == relation
    assert birth_date_relation(b, a) == relation


RELATIONS = {"missing", "exact", "unknown_day", "swapped", "one_typo", "different"}


@st.composite
def related_dates(draw: st.DrawFn) -> tuple[date | None, date | None]:
    """Two birth dates, often close to each other so that every relation gets drawn."""
    a = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)))
    variants = st.one_of(
        st.none(),
        st.just(a),
        st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)),
        st.integers(-40, 40).map(lambda days: a + timedelta(days=days)),
        st.just(date(a.year, 1, 1)),
        st.just(a.replace(day=1)),
        st.integers(1900, 2030)
        .filter(lambda y: (a.month, a.day) != (2, 29))
        .map(lambda y: a.replace(year=y)),
        st.integers(1, 12).filter(lambda m: a.day <= 28).map(lambda m: a.replace(month=m)),
    )
    b = draw(variants)
    return (b, a) if draw(st.booleans()) else (a, b)


@given(related_dates())
def test_birth_date_relation_is_symmetric(pair: tuple[date | None, date | None]) -> None:
    a, b = pair
    relation = birth_date_relation(a, b)
    assert relation in RELATIONS
    assert birth_date_relation(b, a) == relation


@given(related_dates())
def test_birth_date_relation_is_exact_iff_the_dates_are_equal(
    pair: tuple[date | None, date | None],
) -> None:
    a, b = pair
    exact = birth_date_relation(a, b) == "exact"
    assert exact == (a is not None and b is not None and a == b)


# --- places -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("54395", "54395"),
        (" 54395 ", "54395"),
        ("1053", "01053"),
        (1053, "01053"),
        (54395, "54395"),
        ("2A004", "2A004"),
        ("2a004", "2A004"),
        ("2B033", "2B033"),
        ("97105", "97105"),
        ("99100", "99100"),
        ("99352", "99352"),
        ("", None),
        (None, None),
        ("543", None),
        ("543950", None),
        ("2C004", None),
        ("A2004", None),
        ("00123", None),
        ("54000", None),
        ("5439X", None),
        ("54 395", None),
        ("５４３９５", None),
    ],
)
def test_normalize_insee(value: str | int | None, code: str | None) -> None:
    assert normalize_insee(value) == code


@pytest.mark.parametrize(
    ("code", "department"),
    [
        ("54395", "54"),
        ("01053", "01"),
        ("1053", "01"),
        ("2A004", "2A"),
        ("2b033", "2B"),
        ("97105", "971"),
        ("97411", "974"),
        ("98818", "988"),
        ("99100", "99"),
        ("bad", None),
        (None, None),
    ],
)
def test_department_of_insee(code: str | None, department: str | None) -> None:
    assert department_of_insee(code) == department


@pytest.mark.parametrize(
    ("value", "postcode"),
    [
        ("54000", "54000"),
        ("1000", "01000"),
        (1000, "01000"),
        (54000, "54000"),
        (" 54 000 ", "54000"),
        ("97400", "97400"),
        ("", None),
        (None, None),
        ("540", None),
        ("540000", None),
        ("5400A", None),
        ("00100", None),
        ("F-54000", None),
    ],
)
def test_normalize_postcode(value: str | int | None, postcode: str | None) -> None:
    assert normalize_postcode(value) == postcode


@pytest.mark.parametrize(
    "value",
    [
        "+33 6 12 34 56 78",
        "+33612345678",
        "0033612345678",
        "0033 6 12 34 56 78",
        "06.12.34.56.78",
        "06 12 34 56 78",
        "06-12-34-56-78",
        "0612345678",
        "+33 (0)6 12 34 56 78",
        "(06) 12 34 56 78",
        "06/12/34/56/78",
        "33612345678",
        "+330612345678",
        "06\u00a012 34 56 78",
    ],
)
def test_normalize_phone_gives_the_national_form(value: str) -> None:
    assert normalize_phone(value) == "0612345678"


def test_normalize_phone_reads_the_overseas_country_codes() -> None:
    assert normalize_phone("+262 262 12 34 56") == "0262123456"
    assert normalize_phone("+590 690 12 34 56") == "0690123456"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "06 12 34 56",
        "06 12 34 56 78 9",
        "+44 20 7946 0958",
        "+1 555 123 4567",
        "00 12 34 56 78",
        "0612345678 poste 12",
        "06 12 34 56 7a",
        "++33612345678",
        "+06 12 34 56 78",
        "0044 6 12 34 56 78",
        "０６１２３４５６７８",
    ],
)
def test_normalize_phone_rejects_what_is_not_a_french_number(value: str | None) -> None:
    assert normalize_phone(value) is None


french_phones = st.from_regex(
    r"(\+33 ?|0033 ?|\+33 ?\(0\) ?|0)[1-9]([ .\-]?[0-9]{2}){4}", fullmatch=True
)


@given(st.one_of(french_phones, st.text(alphabet="+0123456789 .-()/", max_size=20)))
def test_normalize_phone_is_idempotent_on_its_outputs(value: str) -> None:
    normalized = normalize_phone(value)
    if normalized is not None:
        assert len(normalized) == 10 and normalized.isdigit()
        assert normalize_phone(normalized) == normalized


@given(french_phones)
def test_every_written_form_of_a_french_number_is_read(value: str) -> None:
    assert normalize_phone(value) is not None


# --- placeholder names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "INCONNU",
        "Inconnue",
        "X",
        "XX",
        "XXX",
        "xxxx",
        "ANONYME",
        "Anonymous",
        "SANS NOM",
        "Sans-Nom",
        "SNOM",
        "NON RENSEIGNE",
        "Non renseigné",
        "TEST",
        "PATIENT",
        "X X",
        "X-X",
        "INCONNU X",
        "INCONNU 12",
        "INCONNU12",
        "X3",
        "X 3",
        "XXX 007",
        "Test 2",
    ],
)
def test_placeholder_names(name: str) -> None:
    assert is_placeholder_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "MARTIN",
        "XAVIER",
        "TESTARD",
        "PATIENTE-MARTIN",
        "INCONNU DUPONT",
        "12",
        "",
        None,
        "Y",
        "LUX",
    ],
)
def test_real_names_are_not_placeholders(name: str | None) -> None:
    assert not is_placeholder_name(name)
