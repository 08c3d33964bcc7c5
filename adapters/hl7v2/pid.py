"""Mapping of PID and MRG segments (IHE PAM France 2.11) to the core's record data.

Null semantics: an empty field or component leaves the value unchanged; ``""`` deletes it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from adapters.hl7v2.er7 import NULL, Segment
from mpi.authorities import AuthorityRegistry
from mpi.errors import InvalidValueError, MissingFieldError, UnknownAuthorityError, UnknownCodeError
from mpi.identity import RecordData
from mpi.model import AuthorityKind, Identifier

__all__ = [
    "PID_IDENTIFIERS",
    "record_data_from_pid",
    "identifier_from_cx",
    "parse_hl7_date",
    "parse_hl7_datetime",
]

PID_IDENTIFIERS = 3
PID_NAMES = 5
PID_BIRTH_DATE = 7
PID_SEX = 8
PID_ADDRESS = 11
PID_HOME_PHONE = 13
PID_BIRTHPLACE = 23
PID_DEATH_DATE = 29
PID_DEATH_INDICATOR = 30
PID_RELIABILITY = 32

CX_ID, CX_AUTHORITY, CX_TYPE = 1, 4, 5
XPN_FAMILY, XPN_GIVEN, XPN_OTHER_GIVEN, XPN_TYPE = 1, 2, 3, 7
XAD_STREET, XAD_CITY, XAD_POSTCODE, XAD_COUNTRY, XAD_TYPE, XAD_COUNTY = 1, 3, 5, 6, 7, 9

# Table 0001 (administrative sex) as PAM-FR uses it.
SEX_CODES = frozenset({"M", "F", "U", "O", "A", "N"})
# NH is the NIR used for billing: never an identity key (DOMAIN.md §3).
IGNORED_IDENTIFIER_TYPES = frozenset({"NH"})

_DATE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?")


def parse_hl7_date(text: str, location: str) -> date:
    """Read an HL7 DT/DTM as a date (YYYY[MM[DD]]...). Raises InvalidValueError."""
    match = _DATE.match(text)
    if match is None:
        raise InvalidValueError(f"{text!r} is not an HL7 date", location=location)
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise InvalidValueError(f"{text!r} is not a valid date", location=location) from None


def parse_hl7_datetime(text: str) -> datetime | None:
    """Read an HL7 DTM (YYYYMMDDHHMM[SS][+ZZZZ]); None when absent or unreadable."""
    digits = re.match(r"^(\d{8})(\d{2})?(\d{2})?(\d{2})?", text)
    if digits is None:
        return None
    try:
        day = datetime.strptime(digits.group(1), "%Y%m%d")
        return day.replace(
            hour=int(digits.group(2) or 0),
            minute=int(digits.group(3) or 0),
            second=int(digits.group(4) or 0),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def identifier_from_cx(
    segment: Segment, field: int, repetition: int, registry: AuthorityRegistry, location: str
) -> tuple[Identifier, str]:
    """One CX repetition as (identifier, type code). Raises MissingFieldError (no value),
    UnknownAuthorityError (location points at CX-4)."""
    value = segment.value(field, CX_ID, repetition).strip()
    if not value or value == NULL:
        raise MissingFieldError("identifier without a value", location=location)
    namespace = segment.value(field, CX_AUTHORITY, repetition, 1)
    oid = segment.value(field, CX_AUTHORITY, repetition, 2)
    try:
        authority = registry.find(namespace=namespace, oid=oid)
    except UnknownAuthorityError as exc:
        exc.location = f"{location}^{CX_AUTHORITY}"
        raise
    return Identifier(authority.code, value), segment.value(field, CX_TYPE, repetition)


def record_data_from_pid(
    pid: Segment,
    registry: AuthorityRegistry,
    own_authority: str | None,
    index: int = 1,
    activity_at: datetime | None = None,
) -> RecordData:
    """The record a PID describes: its local identifier (the one in ``own_authority`` when
    given, else the only local one), INS, demographics patch and reliability codes.

    Raises MissingFieldError (PID-3 empty or without a local identifier), UnknownAuthorityError,
    InvalidValueError; every error carries its location (``PID^1^3^2^4`` and the like).
    """
    base = f"PID^{index}"
    local: list[Identifier] = []
    ins: Identifier | None = None
    reps = pid.repetitions(PID_IDENTIFIERS)
    if not any(r.strip() for r in reps):
        raise MissingFieldError("PID-3 (patient identifier list) is empty",
                                location=f"{base}^{PID_IDENTIFIERS}")
    for number in range(1, len(reps) + 1):
        location = f"{base}^{PID_IDENTIFIERS}^{number}"
        identifier, type_code = identifier_from_cx(pid, PID_IDENTIFIERS, number, registry, location)
        if type_code in IGNORED_IDENTIFIER_TYPES:
            continue
        kind = registry.by_code(identifier.authority).kind
        if kind is AuthorityKind.NATIONAL:
            ins = identifier
        elif kind is AuthorityKind.ESTABLISHMENT:
            local.append(identifier)
        # The master domain's identifiers are ours: a sender may echo them, it cannot set them.
    identifier = _choose_local(local, own_authority, f"{base}^{PID_IDENTIFIERS}")
    return RecordData(
        identifier=identifier,
        demographics=_demographics(pid, base),
        ins=ins,
        reliability=_reliability(pid),
        activity_at=activity_at,
        location=f"{base}^{PID_IDENTIFIERS}",
    )


def _choose_local(local: list[Identifier], own: str | None, location: str) -> Identifier:
    if not local:
        raise MissingFieldError("PID-3 holds no local identifier (IPP)", location=location)
    if own is not None:
        mine = [i for i in local if i.authority == own]
        if len(mine) > 1:
            raise InvalidValueError(f"PID-3 holds several identifiers of {own}", location=location)
        # An identifier of another establishment is refused by the use case's authorization.
        return mine[0] if mine else local[0]
    if len(local) > 1:
        raise InvalidValueError("PID-3 holds several local identifiers", location=location)
    return local[0]


def _text(value: str) -> str | None:
    """Unescaped leaf to patch value: None deletes ('""'); callers skip empty strings."""
    return None if value == NULL else value.strip()


def _demographics(pid: Segment, base: str) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    _names(pid, patch)
    raw_birth = pid.value(PID_BIRTH_DATE)
    if raw_birth == NULL:
        patch["birth_date"] = None
    elif raw_birth:
        patch["birth_date"] = parse_hl7_date(raw_birth, f"{base}^{PID_BIRTH_DATE}")
    sex = pid.value(PID_SEX)
    if sex == NULL:
        patch["sex"] = None
    elif sex:
        if sex.upper() not in SEX_CODES:
            raise UnknownCodeError(f"sex {sex!r} is not in table 0001",
                                    location=f"{base}^{PID_SEX}")
        patch["sex"] = sex.upper()
    _address(pid, patch)
    phone = pid.value(PID_HOME_PHONE) or pid.value(PID_HOME_PHONE, 12)
    if phone:
        patch["phone"] = _text(phone)
    birthplace = pid.value(PID_BIRTHPLACE)
    if birthplace:
        patch["birthplace"] = _text(birthplace)
    death = pid.value(PID_DEATH_DATE)
    if death == NULL:
        patch["death_date"] = None
    elif death:
        patch["death_date"] = parse_hl7_date(death, f"{base}^{PID_DEATH_DATE}")
    elif pid.value(PID_DEATH_INDICATOR).upper() == "N":
        # PID-30 "N": the patient is alive, a death date recorded earlier was a mistake. "Y"
        # without a date changes nothing: retention needs the date of the death.
        patch["death_date"] = None
    return patch


def _names(pid: Segment, patch: dict[str, Any]) -> None:
    reps = pid.repetitions(PID_NAMES)
    by_type: dict[str, int] = {}
    for number in range(1, len(reps) + 1):
        name_type = pid.value(PID_NAMES, XPN_TYPE, number) or "U"
        by_type.setdefault(name_type, number)
    legal = by_type.get("L", by_type.get("U"))
    if legal is not None:
        family = pid.value(PID_NAMES, XPN_FAMILY, legal)
        if family:
            patch["birth_family_name"] = _text(family)
        given = pid.value(PID_NAMES, XPN_GIVEN, legal)
        others = pid.value(PID_NAMES, XPN_OTHER_GIVEN, legal)
        if given == NULL:
            patch["given_names"] = None
        elif given or others:
            patch["given_names"] = _given_names(given, others)
    used = by_type.get("D")
    if used is not None:
        family = pid.value(PID_NAMES, XPN_FAMILY, used)
        if family:
            patch["used_family_name"] = _text(family)
        given = pid.value(PID_NAMES, XPN_GIVEN, used)
        if given:
            patch["used_given_name"] = _text(given)


def _given_names(first: str, others: str) -> tuple[str, ...]:
    """PAM-FR puts the first given name in XPN-2 and the birth certificate's list in XPN-3,
    which may or may not repeat the first one."""
    listed = [n for n in re.split(r"[ ,]+", others.strip()) if n and n != NULL]
    first = first.strip() if first != NULL else ""
    if not first:
        return tuple(listed)
    if listed and listed[0].upper() == first.upper():
        return tuple(listed)
    return (first, *listed)


def _address(pid: Segment, patch: dict[str, Any]) -> None:
    reps = pid.repetitions(PID_ADDRESS)
    if not reps:
        return
    chosen = None
    for number in range(1, len(reps) + 1):
        kind = pid.value(PID_ADDRESS, XAD_TYPE, number)
        if kind == "BDL":
            # PAM-FR: the birthplace's INSEE code travels in the BDL address's XAD-9.
            insee = pid.value(PID_ADDRESS, XAD_COUNTY, number)
            if insee and "birthplace" not in patch:
                patch["birthplace"] = _text(insee)
            continue
        if chosen is None or kind == "H":
            chosen = number
    if chosen is None:
        return
    if reps[chosen - 1] == NULL:
        patch.update(street=None, city=None, postcode=None, country=None)
        return
    for name, component in (("street", XAD_STREET), ("city", XAD_CITY),
                            ("postcode", XAD_POSTCODE), ("country", XAD_COUNTRY)):
        value = pid.value(PID_ADDRESS, component, chosen)
        if value:
            patch[name] = _text(value)


def _reliability(pid: Segment) -> tuple[str, ...] | None:
    raw = pid.raw(PID_RELIABILITY)
    if not raw:
        return None
    if raw == NULL:
        return ()
    codes = [pid.value(PID_RELIABILITY, 1, n).upper() for n in range(1, len(pid.repetitions(PID_RELIABILITY)) + 1)]
    return tuple(c for c in codes if c)
