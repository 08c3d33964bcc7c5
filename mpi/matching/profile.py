"""What the matcher compares: a record's traits normalized once, and its blocking keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from mpi.matching.phonetic import phonetic_key
from mpi.model import Demographics, SourceRecord
from mpi.normalize import (
    family_name_key,
    family_name_parts,
    given_names_list,
    is_placeholder_name,
    normalize_insee,
    normalize_phone,
    normalize_postcode,
    normalize_sex,
)

__all__ = ["MatchProfile", "profile_of", "repaired", "BLOCKING_KEYS", "blocking_keys"]


@dataclass(frozen=True)
class MatchProfile:
    """The traits of one record as the matcher compares them."""

    birth_name: str
    birth_name_parts: tuple[str, ...]
    used_name: str
    used_name_parts: tuple[str, ...]
    given_names: tuple[str, ...]
    birth_date: date | None
    sex: str | None
    birthplace: str | None
    postcode: str | None
    phone: str | None
    ins: str | None
    fictitious: bool

    @property
    def first_given(self) -> str:
        return self.given_names[0] if self.given_names else ""


# What UTF-8 read as Windows-1252 (or latin-1) makes of the accented letters: Ã© for é, Ã‰
# for É, Ã« for ë. A latin-1 system on the way from the HIS writes them so.
_MOJIBAKE_MARKS = ("Ã", "Å", "Â")


def repaired(text: str | None) -> str | None:
    """``text`` with its letters mangled by a UTF-8 read as Windows-1252 put back (VÃ©ronique
    is Véronique), or as it is when it is not so mangled."""
    if not text or not any(mark in text for mark in _MOJIBAKE_MARKS):
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            return text.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
    return text


def profile_of(record: SourceRecord) -> MatchProfile:
    """Normalize a record's traits for matching. The same traits give the same profile, so
    the profiles of recent candidates are kept (a record is a candidate of every record of
    its blocks: without the cache, each match normalized each candidate again)."""
    ins = record.qualified_ins
    return _profile(record.demographics, ins.value if ins else None, record.is_fictitious)


@lru_cache(maxsize=32768)
def _profile(d: Demographics, ins: str | None, declared_fictitious: bool) -> MatchProfile:
    birth_family, used_family = repaired(d.birth_family_name), repaired(d.used_family_name)
    birth_name = family_name_key(birth_family)
    given = given_names_list([repaired(name) or "" for name in d.given_names])
    placeholder = is_placeholder_name(birth_family) or (
        not birth_name and not family_name_key(used_family)
    )
    return MatchProfile(
        birth_name=birth_name,
        birth_name_parts=family_name_parts(birth_family),
        used_name=family_name_key(used_family),
        used_name_parts=family_name_parts(used_family),
        given_names=given,
        birth_date=d.birth_date,
        sex=normalize_sex(d.sex),
        birthplace=normalize_insee(d.birthplace),
        postcode=normalize_postcode(d.postcode),
        phone=normalize_phone(d.phone),
        ins=ins,
        fictitious=declared_fictitious or placeholder,
    )


# Each key finds, by an index lookup, the records sharing it. Several keys, so that one error
# (a typo in the name, a swapped date, a missing birthplace) leaves another key intact.
BLOCKING_KEYS = ("name_year", "date_sex", "given_family", "place_date", "used_name")


def blocking_keys(profile: MatchProfile) -> dict[str, str | None]:
    """The record's value for each blocking key (None where a trait it needs is missing).
    A fictitious identity has no keys: it is never a candidate, nor looks for any."""
    if profile.fictitious:
        return {name: None for name in BLOCKING_KEYS}
    birth_code = phonetic_key(profile.birth_name) if profile.birth_name else ""
    used_code = phonetic_key(profile.used_name) if profile.used_name else ""
    given_code = phonetic_key(profile.first_given) if profile.first_given else ""
    year = str(profile.birth_date.year) if profile.birth_date else ""
    day = profile.birth_date.isoformat() if profile.birth_date else ""
    return {
        "name_year": f"{birth_code}:{year}" if birth_code and year else None,
        "date_sex": f"{day}:{profile.sex}" if day and profile.sex else None,
        "given_family": f"{given_code}:{birth_code}" if given_code and birth_code else None,
        "place_date": f"{profile.birthplace}:{day}" if profile.birthplace and day else None,
        "used_name": f"{used_code}:{year}" if used_code and year else None,
    }
