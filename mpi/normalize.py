"""Normalization of identity traits: pure functions, no I/O."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import date, datetime
from functools import lru_cache

__all__ = [
    "birth_date_relation",
    "department_of_insee",
    "family_name_key",
    "family_name_parts",
    "first_given_name",
    "fold",
    "given_names_agree_any_order",
    "given_names_list",
    "is_placeholder_name",
    "is_valid_nir",
    "nir_problem",
    "nir_key",
    "normalize_insee",
    "normalize_phone",
    "normalize_postcode",
    "normalize_sex",
    "parse_birth_date",
    "search_key",
]

_SEPARATORS = re.compile(r"[\s\-'’`´.,]+")
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "ẞ": "SS"})


def fold(text: str | None) -> str:
    """Upper case without accents, with ligatures expanded and separators made single spaces.

    ``fold("Lefèvre-d'Œuf ") == "LEFEVRE D OEUF"``. Empty or None gives "".
    """
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    # Ligatures are expanded after the decomposition, which is what turns the accented ones
    # (Ǣ) and their compatibility forms into Æ or Œ: expanding first would leave those behind.
    return _SEPARATORS.sub(" ", stripped.translate(_LIGATURES)).strip().upper()


def search_key(text: str | None) -> str:
    """A name as searched: folded, and without separators (MARTIN-DUPONT == MARTIN DUPONT)."""
    return fold(text).replace(" ", "")


def nir_key(first13: str) -> int:
    """The two-digit control key of a NIR: 97 - (N mod 97), with Corsica's 2A/2B as 19/18.

    Raises ValueError when the 13 characters are not a NIR body.
    """
    body = first13.upper()
    if len(body) != 13:
        raise ValueError("a NIR body has 13 characters")
    if body[5:7] == "2A":
        body = body[:5] + "19" + body[7:]
    elif body[5:7] == "2B":
        body = body[:5] + "18" + body[7:]
    if not (body.isascii() and body.isdigit()):
        raise ValueError("a NIR body is made of digits (2A/2B allowed for Corsica)")
    return 97 - int(body) % 97


def nir_problem(value: str) -> str | None:
    """What is wrong with an INS (a NIR: 13 characters and a 2-digit key), in words, or None
    when it is well formed and its key is right."""
    if len(value) != 15:
        return (f"INS {value!r} has {len(value)} characters; an INS has 15 (13 and a 2-digit "
                "key)")
    try:
        expected = nir_key(value[:13])
    except ValueError as exc:
        return f"INS {value!r}: {exc}"
    if not value[13:].isdigit():
        return f"INS {value!r}: its key {value[13:]!r} is not two digits"
    if int(value[13:]) != expected:
        return f"INS {value!r}: its key {value[13:]} is wrong for these 13 characters"
    return None


def is_valid_nir(value: str) -> bool:
    """True when ``value`` is 13 characters plus the right 2-digit key."""
    if len(value) != 15 or not value[13:].isdigit():
        return False
    try:
        return nir_key(value[:13]) == int(value[13:])
    except ValueError:
        return False


# --- Names -----------------------------------------------------------------------------------

_NAME_PARTICLES = frozenset(
    {
        "DE",
        "DU",
        "DES",
        "D",
        "LA",
        "LE",
        "LES",
        "L",
        "DEL",
        "DELLA",
        "VAN",
        "VON",
        "DER",
        "DI",
        "DA",
        "DOS",
    }
)
# Apostrophes join the letters around them in a given name (N'GOLO == NGOLO) rather than
# splitting it; every other separator marks the parts of a compound given name.
_APOSTROPHES = re.compile(r"['’`´ʼ‘]")


@lru_cache(maxsize=1 << 16)
def _name_parts(text: str | None) -> tuple[str, ...]:
    """Returns the folded runs of letters and digits of ``text``; any other character separates.

    Dashes of every kind, apostrophes (including the modifier letter ʼ) and punctuation all
    split, which ``fold`` alone does not do for the typographic dashes. Cached: names repeat
    (every candidate of a match is normalized), and the function is pure.
    """
    parts: list[str] = []
    current: list[str] = []
    for char in fold(text):
        if char.isalnum() and unicodedata.category(char) != "Lm":
            current.append(char)
        elif current:
            parts.append("".join(current))
            current = []
    if current:
        parts.append("".join(current))
    return tuple(parts)


def family_name_key(name: str | None) -> str:
    """Returns the family name folded, with every separator removed; "" for None or empty.

    "MARTIN-DUPONT", "Martin–Dupont" and "MARTIN DUPONT" give "MARTINDUPONT"; "D'ARGENT" and
    "D ARGENT" give "DARGENT"; "DE LA FONTAINE" gives "DELAFONTAINE". Removing the
    separators altogether (rather than normalizing them) is what makes a particle written
    apart or glued to the name compare equal.
    """
    return "".join(_name_parts(name))


def family_name_parts(name: str | None) -> tuple[str, ...]:
    """Returns the meaningful folded parts of a (compound) family name, in order.

    Particles (DE, LA, LE, D, VAN...) are dropped when another part remains: "MARTIN-DUPONT"
    gives ("MARTIN", "DUPONT"), "DE LA FONTAINE" gives ("FONTAINE",), "D'ARGENT" gives
    ("ARGENT",). A name made only of particles keeps them ("LE" gives ("LE",)); None or empty
    gives ().
    """
    parts = _name_parts(name)
    meaningful = tuple(part for part in parts if part not in _NAME_PARTICLES)
    return meaningful if meaningful else tuple(parts)


@lru_cache(maxsize=1 << 16)
def _given_name_item(item: str) -> str:
    """Returns one given name folded, the parts of a compound name joined by one hyphen."""
    return "-".join(_name_parts(_APOSTROPHES.sub("", item)))


def given_names_list(names: Iterable[str] | str | None) -> tuple[str, ...]:
    """Returns the given names folded, in order, without the empty ones.

    Each item stays one given name: "Jean-Pierre", "JEAN PIERRE" and "Jean–Pierre" all give
    "JEAN-PIERRE". A lone string is taken as a single item (not as its characters).
    """
    if names is None:
        return ()
    items = [names] if isinstance(names, str) else names
    folded = (_given_name_item(item) for item in items if item)
    return tuple(name for name in folded if name)


def first_given_name(names: Iterable[str] | str | None) -> str:
    """Returns the first folded given name (see ``given_names_list``), or "" when there is none."""
    listed = given_names_list(names)
    return listed[0] if listed else ""


def given_names_agree_any_order(
    a: Iterable[str] | str | None, b: Iterable[str] | str | None
) -> bool:
    """True when both lists hold the same non-empty set of given names, in any order.

    ("JEAN", "PAUL") agrees with ("Paul", "Jean"); two empty lists do not agree.
    """
    first = set(given_names_list(a))
    return bool(first) and first == set(given_names_list(b))


# Compared without separators: SANS NOM, SANS-NOM and SANSNOM are one entry.
_PLACEHOLDER_NAMES = frozenset(
    {
        "INCONNU",
        "INCONNUE",
        "INCONNUX",
        "INCONNUEX",
        "ANONYME",
        "ANONYMOUS",
        "SANSNOM",
        "SNOM",
        "NONRENSEIGNE",
        "NONRENSEIGNEE",
        "TEST",
        "PATIENT",
    }
)
_TRAILING_NUMBER = re.compile(r"[0-9]+$")
_ONLY_X = re.compile(r"X+")


def is_placeholder_name(name: str | None) -> bool:
    """True when ``name`` is one hospitals give to unidentified patients.

    INCONNU(E), ANONYME, SANS NOM, SNOM, NON RENSEIGNE, TEST, PATIENT, INCONNU X, and names
    made only of X ("X", "XXX", "X X"), also when followed by a number ("INCONNU 12", "X3").
    The comparison is on the folded name without separators. None or empty is a missing
    name, not a placeholder: False.
    """
    compact = _TRAILING_NUMBER.sub("", family_name_key(name))
    return compact in _PLACEHOLDER_NAMES or _ONLY_X.fullmatch(compact) is not None


# --- Sex -------------------------------------------------------------------------------------

_SEX_CODES = {
    **dict.fromkeys(("M", "H", "1", "MASCULIN", "MALE", "HOMME"), "M"),
    **dict.fromkeys(("F", "2", "FEMININ", "FEMALE", "FEMME"), "F"),
}


def normalize_sex(value: str | int | None) -> str | None:
    """Returns "M" or "F", or None when the sex is unknown, other or unreadable.

    Accepts the HL7 codes (M, F; U, O, A, N give None), the NIR digits 1 and 2, H for
    "homme", and the words masculin, féminin, male, female, homme, femme in any case.
    """
    if value is None or isinstance(value, bool):
        return None
    return _SEX_CODES.get(fold(str(value)))


# --- Birth dates -----------------------------------------------------------------------------

_DATE_FORMATS = (
    re.compile(r"(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})"),
    re.compile(r"(?P<y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2})"),
    re.compile(r"(?P<d>[0-9]{2})[/-](?P<m>[0-9]{2})[/-](?P<y>[0-9]{4})"),
)


def parse_birth_date(value: date | str | None) -> date | None:
    """Returns the date, or None when ``value`` is missing, unreadable or not a real date.

    Reads ``date`` objects (a ``datetime`` gives its date), "YYYYMMDD", "YYYY-MM-DD",
    "DD/MM/YYYY" and "DD-MM-YYYY". "19800231" gives None.
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    for pattern in _DATE_FORMATS:
        match = pattern.fullmatch(text)
        if match:
            try:
                return date(int(match["y"]), int(match["m"]), int(match["d"]))
            except ValueError:
                return None
    return None


def _one_digit_edit(x: int, y: int, width: int) -> bool:
    """True when the zero-padded forms of x and y differ by one digit or one adjacent swap.

    "1980" and "1986" (one digit), "1980" and "1908" (two neighbours swapped).
    """
    a, b = f"{x:0{width}d}", f"{y:0{width}d}"
    differing = [i for i in range(len(a)) if a[i] != b[i]]
    if len(differing) == 1:
        return True
    if len(differing) == 2 and differing[1] == differing[0] + 1:
        i, j = differing
        return a[i] == b[j] and a[j] == b[i]
    return False


def _day_unknown(a: date, b: date) -> bool:
    """True when one date may stand for "day unknown" in the other's year (or month).

    French registration writes an unknown day as 01/01/YYYY, or as the 1st of the month when
    the month is known.
    """
    if a.year != b.year:
        return False
    if (a.month, a.day) == (1, 1) or (b.month, b.day) == (1, 1):
        return True
    return a.month == b.month and 1 in (a.day, b.day)


def _one_typo(a: date, b: date) -> bool:
    """True when a single digit typed wrong (or two swapped) explains the difference."""
    if a.year == b.year:
        if a.month == b.month:
            return _one_digit_edit(a.day, b.day, 2)
        if a.day == b.day:
            return _one_digit_edit(a.month, b.month, 2)
        return False
    return (a.month, a.day) == (b.month, b.day) and _one_digit_edit(a.year, b.year, 4)


def birth_date_relation(a: date | None, b: date | None) -> str:
    """Returns how two birth dates relate, the first that applies of:

    "missing" (either is None), "exact", "unknown_day" (same year and one is January 1st, or
    same month and one is the 1st), "swapped" (day and month inverted), "one_typo" (same year
    and the day or the month off by one digit or two swapped digits; or same day and month and
    the years off by one digit or two swapped digits, 1980 / 1986 / 1908), "different".
    The relation is symmetric.
    """
    if a is None or b is None:
        return "missing"
    if a == b:
        return "exact"
    if _day_unknown(a, b):
        return "unknown_day"
    if a.year == b.year and a.day == b.month and a.month == b.day:
        return "swapped"
    if _one_typo(a, b):
        return "one_typo"
    return "different"


# --- Places ----------------------------------------------------------------------------------

_INSEE = re.compile(r"(?:[0-9]{2}|2[AB])[0-9]{3}")
_OVERSEAS_PREFIXES = ("97", "98")


def normalize_insee(value: str | int | None) -> str | None:
    """Returns the 5-character INSEE commune code, or None when ``value`` is not one.

    Digits, or 2A/2B then 3 digits for Corsica (upper-cased); a 4-digit code gets back the
    leading zero a spreadsheet took away ("1053" gives "01053"). Foreign birth places (99xxx)
    are kept. Department 00 and commune number 000 do not exist: None.
    """
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip().upper()
    if len(text) == 4 and text.isascii() and text.isdigit():
        text = "0" + text
    if not _INSEE.fullmatch(text) or text.startswith("00") or text.endswith("000"):
        return None
    return text


def department_of_insee(code: str | int | None) -> str | None:
    """Returns the department of an INSEE commune code, or None when the code is not valid.

    Two characters ("54395" gives "54", "2A004" gives "2A", "99100" gives "99"), three for
    the overseas departments and collectivities ("97105" gives "971").
    """
    normalized = normalize_insee(code)
    if normalized is None:
        return None
    return normalized[:3] if normalized.startswith(_OVERSEAS_PREFIXES) else normalized[:2]


_POSTCODE = re.compile(r"[0-9]{4,5}")


def normalize_postcode(value: str | int | None) -> str | None:
    """Returns the 5-digit postcode, or None when ``value`` is not one.

    Spaces are ignored ("54 000"); a 4-digit postcode gets its leading zero back ("1000" gives
    "01000"). No French postcode starts with 00: None.
    """
    if value is None or isinstance(value, bool):
        return None
    text = re.sub(r"\s+", "", str(value))
    if not _POSTCODE.fullmatch(text):
        return None
    text = text.zfill(5)
    return None if text.startswith("00") else text


# Country codes that the national numbering plan shares: metropolitan France and the overseas
# departments, whose national numbers are written 0 + the 9 digits that follow the code.
_FRENCH_COUNTRY_CODES = ("33", "262", "269", "590", "594", "596")
_PHONE_PUNCTUATION = re.compile(r"[\s.\-/()]")
_PHONE_CHARACTERS = re.compile(r"\+?[0-9]+")


def _national_digits(digits: str) -> str:
    """Returns ``digits`` without a French country code (with its 00 prefix or not).

    Returns "" for an international number (00 prefix) whose country code is not French.
    """
    international = digits.startswith("00")
    if international:
        digits = digits[2:]
    elif len(digits) == 10:
        return digits
    for code in _FRENCH_COUNTRY_CODES:
        if digits.startswith(code) and len(digits) - len(code) in (9, 10):
            rest = digits[len(code) :]
            # "+33 0 6..." keeps the trunk 0 that should have been left out: 10 digits.
            return rest if len(rest) == 10 else "0" + rest
    return "" if international else digits


def normalize_phone(value: str | None) -> str | None:
    """Returns a French phone number in its 10-digit national form, or None.

    "+33 6 12 34 56 78", "0033612345678", "+33 (0)6 12 34 56 78", "06.12.34.56.78" and
    "06 12 34 56 78" all give "0612345678"; the overseas codes (+262, +269, +590, +594, +596)
    are read the same way. None for anything that is not then 0 followed by a non-zero digit
    and 8 more digits (foreign numbers, extensions, letters).
    """
    if not value:
        return None
    compact = _PHONE_PUNCTUATION.sub("", value.replace("(0)", ""))
    if not _PHONE_CHARACTERS.fullmatch(compact):
        return None
    international = compact.startswith("+")
    digits = compact.lstrip("+")
    national = _national_digits("00" + digits if international else digits)
    if len(national) == 10 and national[0] == "0" and national[1] != "0":
        return national
    return None
