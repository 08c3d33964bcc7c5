"""PDQm (ITI-78): read a Patient, search Patients (GET, and POST form-encoded).

String parameters match the start of the value, case, accents and separators ignored (FHIR's
default); ``:exact`` compares the value as written (family, given, address-postalcode).
``identifier=system|value`` finds the person holding that identifier, ``identifier=system|``
the persons holding one in that domain. Every criterion but ``_id``, ``identifier=system|``
and ``active`` bears on one record of the person. Paging: ``_count`` (at most 100, default
20) and ``_offset``, which the ``next`` link carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from adapters.fhir.common import base_url, only_parameters, patient_of
from adapters.fhir.mapping import parse_token_identifier, patient_json
from adapters.fhir.registry import SearchParameter
from adapters.fhir.wire import FhirError
from mpi.authorities import AuthorityRegistry
from mpi.errors import UnknownAuthorityError
from mpi.model import Identifier, PersonStatus, master_id_of, person_id_of_master_id
from mpi.ports import PersonQuery, UnitOfWork
from mpi.queries import PersonView, search_persons

__all__ = ["SEARCH_PARAMETERS", "PatientSearch", "parse_search", "search_bundle", "read_person"]

DEFAULT_COUNT = 20
MAX_COUNT = 100
MAX_OFFSET = 1_000_000
_SPEC = "http://hl7.org/fhir/SearchParameter/"

SEARCH_PARAMETERS = (
    SearchParameter("_id", "token", "Patient id (the master identifier); a comma-separated "
                    "list finds any of them", _SPEC + "Resource-id"),
    SearchParameter("identifier", "token", "urn:oid:<domain OID>|value: the person holding it "
                    "(a local identifier, the qualified INS or the master identifier); "
                    "urn:oid:<domain OID>| alone: persons holding an identifier in that domain",
                    _SPEC + "Patient-identifier"),
    SearchParameter("family", "string", "birth or used family name, starting with the value; "
                    ":exact for the name as written", _SPEC + "individual-family"),
    SearchParameter("given", "string", "first given name, starting with the value; :exact for "
                    "the name as written", _SPEC + "individual-given"),
    SearchParameter("birthdate", "date", "birth date, YYYY-MM-DD (prefix eq allowed)",
                    _SPEC + "individual-birthdate"),
    SearchParameter("gender", "token", "male | female | other | unknown",
                    _SPEC + "individual-gender"),
    SearchParameter("address-postalcode", "string", "postal code, starting with the value; "
                    ":exact for the whole code", _SPEC + "individual-address-postalcode"),
    SearchParameter("address-city", "string", "city, starting with the value",
                    _SPEC + "individual-address-city"),
    SearchParameter("telecom", "token", "phone number as recorded ([phone|]number)",
                    _SPEC + "individual-telecom"),
    SearchParameter("active", "token", "true: active persons (the default); false: persons "
                    "merged into another (found by _id only)", _SPEC + "Patient-active"),
)
_EXACT_ALLOWED = frozenset({"family", "given", "address-postalcode"})
_PAGING = frozenset({"_count", "_offset"})
_KNOWN = frozenset(p.name for p in SEARCH_PARAMETERS) | _PAGING
_GENDERS = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
_GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"
_DATE = re.compile(r"(?:eq)?(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class PatientSearch:
    query: PersonQuery
    count: int
    offset: int
    finds_nothing: bool  # a criterion no person can meet (e.g. an e-mail address)
    parameters: tuple[tuple[str, str], ...]  # the criteria as sent, for the paging links


def _single(name: str, value: str) -> str:
    if "," in value.replace("\\,", ""):
        raise FhirError(400, "not-supported", f"{name}: several values (OR) are not supported",
                        expression=name)
    return value.replace("\\,", ",")


def _number(name: str, value: str, maximum: int) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > maximum:
        raise FhirError(400, "invalid", f"{name} must be an integer from 0 to {maximum}, "
                        f"not {value!r}", expression=name)
    return int(value)


def _birth_date(value: str) -> date:
    found = _DATE.fullmatch(value)
    try:
        if found is None:
            raise ValueError(value)
        return date.fromisoformat(found.group(1))
    except ValueError:
        raise FhirError(400, "invalid", f"birthdate {value!r} is not a date YYYY-MM-DD "
                        "(only the eq prefix is supported)", expression="birthdate") from None


def parse_search(pairs: list[tuple[str, str]], registry: AuthorityRegistry) -> PatientSearch:
    """The criteria of a Patient search. Raises FhirError 400 for an unknown parameter or
    modifier, a repeated criterion, a bad value, or no criterion at all."""
    only_parameters((name.split(":", 1)[0] for name, _ in pairs), _KNOWN)
    values: dict[str, Any] = {}
    seen: set[str] = set()
    count, offset, nothing = DEFAULT_COUNT, 0, False
    kept: list[tuple[str, str]] = []
    for raw_name, raw_value in pairs:
        if raw_name == "_format":
            continue
        name, _, modifier = raw_name.partition(":")
        if modifier and not (modifier == "exact" and name in _EXACT_ALLOWED):
            raise FhirError(400, "not-supported", f"modifier :{modifier} is not supported on "
                            f"{name}", expression=raw_name)
        if name in seen:
            raise FhirError(400, "not-supported", f"{name} is given twice (AND of one "
                            "parameter is not supported)", expression=name)
        seen.add(name)
        value = raw_value.strip()
        if name == "_count":
            count = min(_number(name, value, MAX_OFFSET), MAX_COUNT)
            continue
        if name == "_offset":
            offset = _number(name, value, MAX_OFFSET)
            continue
        kept.append((raw_name, raw_value))
        if not value:
            continue  # FHIR: a parameter without a value is ignored
        if name == "_id":
            ids = [person_id_of_master_id(v.strip()) for v in value.split(",")]
            values["person_ids"] = tuple(i for i in ids if i is not None)
        elif name == "identifier":
            nothing |= _identifier(registry, _single(name, value), values)
        elif name in ("family", "given"):
            text = _single(name, value)
            values[f"{name}_exact" if modifier else name] = text if modifier else text + "*"
        elif name == "birthdate":
            values["birth_date"] = _birth_date(_single(name, value))
        elif name == "gender":
            code = _single(name, value).removeprefix(_GENDER_SYSTEM + "|")
            if code not in _GENDERS:
                raise FhirError(400, "code-invalid", f"gender {value!r} is not one of "
                                f"{', '.join(_GENDERS)}", expression=name)
            values["sex"] = _GENDERS[code]
        elif name == "address-postalcode":
            text = _single(name, value)
            values["postcode"] = text if modifier else text + "*"
        elif name == "address-city":
            values["city"] = _single(name, value) + "*"
        elif name == "telecom":
            system, sep, number = _single(name, value).rpartition("|")
            if sep and system != "phone":
                nothing = True  # only phone numbers are recorded
            values["phone"] = number.replace(" ", "") or None
        elif name == "active":
            if value not in ("true", "false"):
                raise FhirError(400, "invalid", f"active must be true or false, not {value!r}",
                                expression=name)
            values["active"] = value == "true"
    query = PersonQuery(**values)
    if query.is_empty() and not nothing:
        raise FhirError(400, "invalid", "a Patient search needs at least one criterion besides "
                        "active and the paging parameters")
    return PatientSearch(query, count, offset, nothing, tuple(kept))


def _identifier(registry: AuthorityRegistry, token: str, values: dict[str, Any]) -> bool:
    """Fill the identifier criterion; True when no person can match."""
    try:
        authority, value = parse_token_identifier(registry, token, "identifier")
    except UnknownAuthorityError:
        return True  # an identifier system we do not know identifies none of our persons
    if value:
        values["identifier"] = Identifier(authority.code, value)
    else:
        values["domain"] = authority.code
    return False


def search_bundle(uow: UnitOfWork, registry: AuthorityRegistry, search: PatientSearch,
                  request: Request) -> tuple[dict[str, Any], list[int]]:
    """The searchset Bundle of one page, and the persons it discloses."""
    views: list[PersonView]
    if search.finds_nothing:
        views, total = [], 0
    else:
        views, total = search_persons(uow, registry, search.query, search.offset, search.count)
    base = base_url(request)
    entries, persons = [], []
    for view in views:
        assert view.person.id is not None
        persons.append(view.person.id)
        entries.append({
            "fullUrl": f"{base}/Patient/{master_id_of(view.person.id)}",
            "resource": patient_json(view, registry)
            if view.person.status is PersonStatus.ACTIVE
            else patient_of(uow, registry, view.person),
            "search": {"mode": "match"},
        })
    links = [{"relation": "self", "url": _page_url(base, search, search.offset)}]
    if search.offset + len(views) < total and search.count > 0:
        links.append({"relation": "next",
                      "url": _page_url(base, search, search.offset + search.count)})
    if search.offset > 0:
        links.append({"relation": "previous",
                      "url": _page_url(base, search, max(0, search.offset - search.count))})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total,
                              "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle, persons


def _page_url(base: str, search: PatientSearch, offset: int) -> str:
    query = list(search.parameters) + [("_count", str(search.count)), ("_offset", str(offset))]
    return f"{base}/Patient?{urlencode(query)}"


def read_person(uow: UnitOfWork, registry: AuthorityRegistry,
                patient_id: str) -> tuple[dict[str, Any], int]:
    """The Patient of an id, and the person number. Raises FhirError 404."""
    person_id = person_id_of_master_id(patient_id)
    person = uow.persons.get(person_id) if person_id is not None else None
    if person is None or person.id is None:
        raise FhirError(404, "not-found", f"no Patient {patient_id}",
                        expression="Patient.id")
    return patient_of(uow, registry, person), person.id
