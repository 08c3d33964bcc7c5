"""Between the index and FHIR R4 Patient resources (validated with ``fhir.resources.R4B``).

Identifier systems are ``urn:oid:<domain OID>``. Names: the birth name is ``official`` (with
every given name of the birth certificate), the used name ``usual``. The identity reliability
codes (PAM-FR table 0445: VALI, PROV, DOUT, FICT...) ride in the extension
:data:`RELIABILITY_EXTENSION`; the INS is shown, and taken, only with a qualified identity.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir.resources.R4B.patient import Patient

from adapters.fhir.wire import FhirError
from mpi.authorities import AuthorityRegistry
from mpi.errors import UnknownAuthorityError
from mpi.identity import RecordData
from mpi.model import (
    DEMOGRAPHIC_FIELDS,
    QUALIFIED_RELIABILITY_CODES,
    Authority,
    AuthorityKind,
    Demographics,
    Identifier,
    Person,
    PersonStatus,
    master_id_of,
)
from mpi.queries import PersonView

__all__ = [
    "EXTENSION_BASE", "RELIABILITY_EXTENSION", "RELIABILITY_SYSTEM", "BIRTHPLACE_EXTENSION",
    "system_of", "authority_of_system", "parse_token_identifier", "patient_json",
    "parse_patient", "record_data_from_patient", "reliability_of", "demographics_of",
]

EXTENSION_BASE = "http://mpi.nancy.invalid/fhir/StructureDefinition/"
RELIABILITY_EXTENSION = EXTENSION_BASE + "identity-reliability"
RELIABILITY_SYSTEM = "http://mpi.nancy.invalid/fhir/CodeSystem/identity-reliability"
BIRTHPLACE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
OID_PREFIX = "urn:oid:"

_GENDER_OF_SEX = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown",
                  "N": "unknown"}
_SEX_OF_GENDER = {"male": "M", "female": "F", "other": "O", "unknown": "U"}


def system_of(authority: Authority) -> str:
    return OID_PREFIX + authority.oid


def authority_of_system(registry: AuthorityRegistry, system: str) -> Authority:
    """The domain a FHIR identifier system names. Raises UnknownAuthorityError."""
    if not system.lower().startswith(OID_PREFIX):
        raise UnknownAuthorityError(f"identifier system {system!r} is not urn:oid:<domain OID>")
    oid = system[len(OID_PREFIX):]
    if not oid:
        raise UnknownAuthorityError("identifier system urn:oid: names no OID")
    return registry.find(oid=oid)


def parse_token_identifier(registry: AuthorityRegistry, token: str,
                           where: str) -> tuple[Authority, str]:
    """``system|value`` (value may be empty) → (domain, value). Raises FhirError 400 invalid
    for a token without a system, UnknownAuthorityError for an unknown system."""
    system, sep, value = token.partition("|")
    if not sep or not system:
        raise FhirError(400, "invalid",
                        f"{where} must be system|value with system urn:oid:<domain OID>",
                        expression=where)
    return authority_of_system(registry, system), value


def _gender(sex: str | None) -> str | None:
    return _GENDER_OF_SEX.get(sex.upper()) if sex else None


def demographics_json(d: Demographics) -> dict[str, Any]:
    """The Patient elements that carry demographics."""
    resource: dict[str, Any] = {}
    names = []
    if d.birth_family_name or d.given_names:
        name: dict[str, Any] = {"use": "official"}
        if d.birth_family_name:
            name["family"] = d.birth_family_name
        if d.given_names:
            name["given"] = list(d.given_names)
        names.append(name)
    if d.used_family_name or d.used_given_name:
        name = {"use": "usual"}
        if d.used_family_name:
            name["family"] = d.used_family_name
        if d.used_given_name:
            name["given"] = [d.used_given_name]
        names.append(name)
    if names:
        resource["name"] = names
    if d.phone:
        resource["telecom"] = [{"system": "phone", "value": d.phone}]
    gender = _gender(d.sex)
    if gender:
        resource["gender"] = gender
    if d.birth_date:
        resource["birthDate"] = d.birth_date.isoformat()
    if d.death_date:
        resource["deceasedDateTime"] = d.death_date.isoformat()
    address = {key: value for key, value in (
        ("line", [d.street] if d.street else None), ("city", d.city),
        ("postalCode", d.postcode), ("country", d.country)) if value}
    if address:
        resource["address"] = [{"use": "home", **address}]
    return resource


def patient_json(view: PersonView, registry: AuthorityRegistry,
                 replaced_by: Person | None = None) -> dict[str, Any]:
    """The Patient resource of a person: golden demographics, every identifier (the INS only
    when qualified), the reliability of the identity the golden view comes from; a merged
    person is inactive and replaced by its survivor."""
    person = view.person
    assert person.id is not None
    resource: dict[str, Any] = {"resourceType": "Patient", "id": master_id_of(person.id)}
    extensions: list[dict[str, Any]] = []
    if view.reliability:
        extensions.append({"url": RELIABILITY_EXTENSION, "valueCodeableConcept": {"coding": [
            {"system": RELIABILITY_SYSTEM, "code": code} for code in view.reliability]}})
    if view.demographics.birthplace:
        extensions.append({"url": BIRTHPLACE_EXTENSION,
                           "valueAddress": {"text": view.demographics.birthplace}})
    if extensions:
        resource["extension"] = extensions
    resource["identifier"] = [
        _identifier_json(registry, identifier) for identifier in view.identifiers
    ]
    resource["active"] = person.status is PersonStatus.ACTIVE
    resource.update(demographics_json(view.demographics))
    if replaced_by is not None and replaced_by.id is not None:
        resource["link"] = [{"other": {"reference": f"Patient/{master_id_of(replaced_by.id)}"},
                             "type": "replaced-by"}]
    return resource


def _identifier_json(registry: AuthorityRegistry, identifier: Identifier) -> dict[str, Any]:
    authority = registry.by_code(identifier.authority)
    found: dict[str, Any] = {"system": system_of(authority), "value": identifier.value}
    if authority.kind is AuthorityKind.MASTER:
        found["use"] = "official"
    found["assigner"] = {"display": authority.name}
    return found


# -- from FHIR ------------------------------------------------------------------------------


def parse_patient(data: dict[str, Any], where: str = "Patient") -> Patient:
    """A Patient validated by fhir.resources. Raises FhirError 400 with the problems found."""
    if data.get("resourceType") != "Patient":
        raise FhirError(400, "invalid", f"{where} must be a Patient resource", expression=where)
    try:
        return Patient.model_validate(data)
    except Exception as exc:  # pydantic and fhir.resources report invalid input variously
        raise FhirError(400, "invalid", f"{where} is not a valid FHIR R4 Patient: {exc}",
                        expression=where) from None


def reliability_of(patient: Patient) -> tuple[str, ...]:
    codes: list[str] = []
    for extension in patient.extension or ():
        if extension.url != RELIABILITY_EXTENSION:
            continue
        concept = extension.valueCodeableConcept
        for coding in (concept.coding or ()) if concept is not None else ():
            if coding.code:
                codes.append(coding.code.upper())
    return tuple(dict.fromkeys(codes))


def _full_date(value: Any, where: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    raise FhirError(400, "invalid", f"{where} must be a full date (YYYY-MM-DD), not {value}",
                    expression=where)


def demographics_of(patient: Patient) -> dict[str, Any]:
    """Every demographic field a Patient states (a PUT replaces the whole record: what it
    leaves out is cleared)."""
    values: dict[str, Any] = {name: None for name in DEMOGRAPHIC_FIELDS}
    names = list(patient.name or ())
    official = next((n for n in names if n.use in ("official", "maiden")), None)
    if official is None:
        official = next((n for n in names if n.use not in ("usual", "nickname")), None)
    usual = next((n for n in names if n.use == "usual"), None)
    if official is not None:
        values["birth_family_name"] = official.family
        values["given_names"] = tuple(g for g in (official.given or ()) if g)
    if usual is not None:
        values["used_family_name"] = usual.family
        values["used_given_name"] = (usual.given or [None])[0]
    if patient.gender:
        values["sex"] = _SEX_OF_GENDER.get(str(patient.gender))
    values["birth_date"] = _full_date(patient.birthDate, "Patient.birthDate")
    if patient.deceasedDateTime is not None:
        deceased = patient.deceasedDateTime
        values["death_date"] = deceased.date() if hasattr(deceased, "date") else _full_date(
            deceased, "Patient.deceasedDateTime")
    addresses = list(patient.address or ())
    address = next((a for a in addresses if a.use == "home"), addresses[0] if addresses else None)
    if address is not None:
        values["street"] = " ".join(line for line in (address.line or ()) if line) or None
        values["city"] = address.city
        values["postcode"] = address.postalCode
        values["country"] = address.country
    phone = next((t for t in (patient.telecom or ()) if t.system == "phone" and t.value), None)
    values["phone"] = phone.value if phone is not None else None
    for extension in patient.extension or ():
        if extension.url == BIRTHPLACE_EXTENSION and extension.valueAddress is not None:
            values["birthplace"] = extension.valueAddress.text or extension.valueAddress.district
    return values


def record_data_from_patient(registry: AuthorityRegistry, patient: Patient,
                             identifier: Identifier) -> RecordData:
    """What a PUT says about the record ``identifier`` (the one its URL names). The body's
    identifiers must not contradict it; an INS (national domain) is taken with the record,
    identifiers of other domains are ignored as in PID-3. Raises FhirError 400."""
    ins: Identifier | None = None
    for number, given in enumerate(patient.identifier or ()):
        where = f"Patient.identifier[{number}]"
        if not given.system or not given.value:
            raise FhirError(400, "required", f"{where} needs a system and a value",
                            expression=where)
        try:
            authority = authority_of_system(registry, given.system)
        except UnknownAuthorityError as exc:
            raise FhirError(400, "code-invalid", exc.message, expression=where) from None
        if authority.code == identifier.authority and given.value != identifier.value:
            raise FhirError(400, "invalid",
                            f"{where} contradicts the identifier of the request URL",
                            expression=where)
        if authority.is_national:
            if ins is not None and ins.value != given.value:
                raise FhirError(400, "invalid", "the Patient carries two different INS",
                                expression=where)
            ins = Identifier(authority.code, given.value)
    return RecordData(
        identifier=identifier, demographics=demographics_of(patient), ins=ins,
        reliability=reliability_of(patient), location="Patient.identifier",
    )


def is_qualified(reliability: tuple[str, ...]) -> bool:
    return bool(QUALIFIED_RELIABILITY_CODES.intersection(reliability))
