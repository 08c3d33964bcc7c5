"""The QIDO-RS query parameters beyond the matching keys (PS3.18 8.3.4): ``limit`` and
``offset`` (paging), ``includefield`` (attributes to add to each answer, or ``all``) and
``fuzzymatching`` (person names matched loosely)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from mpi.archive import ArchiveQuery

__all__ = ["Options", "Paging", "paging", "included_fields", "fuzzy_matching", "fuzzy_query",
           "with_included", "ALL"]

ALL = "all"
MAX_LIMIT = 10_000


@dataclasses.dataclass(frozen=True)
class Paging:
    offset: int
    limit: int


def _integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


def paging(params: Mapping[str, str]) -> Paging:
    """The page a query asks for. Raises ValueError for a bad ``limit`` or ``offset``."""
    return Paging(offset=_integer(params, "offset", 0, 0, 1_000_000),
                  limit=_integer(params, "limit", 1000, 1, MAX_LIMIT))


def included_fields(values: Sequence[str]) -> set[str] | str:
    """The attributes ``includefield`` names, as 8-digit hexadecimal tags (``ALL`` for
    ``all``); each value may list several, comma-separated, by keyword or tag. Raises
    ValueError for a name that is no DICOM attribute."""
    wanted: set[str] = set()
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            if name.lower() == ALL:
                return ALL
            tag = tag_for_keyword(name)
            if tag is None:
                if len(name) != 8 or any(c not in "0123456789abcdefABCDEF" for c in name):
                    raise ValueError(f"includefield {name!r} is not a DICOM keyword or tag")
                wanted.add(name.upper())
            else:
                wanted.add(f"{tag:08X}")
    return wanted


def fuzzy_matching(params: Mapping[str, str]) -> bool:
    """Whether ``fuzzymatching`` is on. Raises ValueError for a value other than true or
    false."""
    value = params.get("fuzzymatching", "false").strip().lower()
    if value not in ("true", "false"):
        raise ValueError("fuzzymatching must be true or false")
    return value == "true"


def fuzzy_query(query: ArchiveQuery) -> ArchiveQuery:
    """Fuzzy person-name matching: each component of PatientName matches as a prefix (the
    index always ignores case and accents)."""
    if not query.patient_name:
        return query
    parts = [part.strip() for part in query.patient_name.split("^")]
    loose = "^".join(part if not part or part.endswith("*") else part + "*" for part in parts)
    return dataclasses.replace(query, patient_name=loose)


def with_included(answer: dict[str, Any], fields: set[str] | str) -> dict[str, Any]:
    """An answer with each attribute ``includefield`` named and the archive does not hold
    for this level present and empty (PS3.18: a requested attribute without a value is
    returned empty); with ``all``, the answer as it is (every attribute the archive
    indexes at that level)."""
    if isinstance(fields, str):
        return answer
    for tag in sorted(fields - set(answer)):
        try:
            vr = dictionary_VR(int(tag, 16))
        except KeyError:
            vr = "UN"
        answer[tag] = {"vr": vr.split(" or ")[0]}
    return answer


@dataclasses.dataclass(frozen=True)
class Options:
    """What a QIDO-RS request asks beside its matching keys."""

    offset: int
    limit: int
    fields: set[str] | str
    fuzzy: bool

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Options:
        """The options of a request's parameters (a mapping of strings, or one with
        ``getlist`` for repeated ``includefield``). Raises ValueError."""
        getlist = getattr(params, "getlist", None)
        if getlist is not None:
            fields = list(getlist("includefield"))
        else:
            value = params.get("includefield", [])
            fields = [value] if isinstance(value, str) else list(value)
        page = paging(params)
        return cls(page.offset, page.limit, included_fields(fields), fuzzy_matching(params))
