"""PIXm: the cross-reference query (ITI-83) and the patient identity feed (ITI-104).

Query: ``sourceIdentifier=urn:oid:<OID>|value`` names a local identifier, an INS (qualified
records only) or a master identifier. A retired identifier (merged by an A40 or a FHIR merge,
replaced by an A47) resolves to the record it was folded into: the answer is the survivor's
person. The source identifier is never in the answer.

Feed: a conditional PUT on ``Patient?identifier=urn:oid:<OID>|value`` creates or updates the
record of that identifier exactly as an A28/A31 would; with ``active: false`` and a
``replaced-by`` link naming another record of the same domain, it merges as an A40 (the URL's
record is retired into the linked one). A conditional DELETE removes the record.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fhir.resources.R4B.patient import Patient

from adapters.fhir.mapping import authority_of_system, parse_token_identifier, system_of
from adapters.fhir.wire import FhirError
from mpi.authorities import AuthorityRegistry
from mpi.errors import UnknownAuthorityError, UnknownIdentifierError
from mpi.model import Authority, Identifier, master_id_of
from mpi.ports import UnitOfWork
from mpi.queries import cross_reference

__all__ = ["pix_parameters", "conditional_identifier", "replaced_by"]


def _target_domains(registry: AuthorityRegistry, request: Request) -> list[Authority] | None:
    """The domains asked for (None: all). Raises FhirError 403 code-invalid for an unknown
    one, as PIXm prescribes."""
    systems = [s.strip() for value in request.query_params.getlist("targetSystem")
               for s in value.split(",") if s.strip()]
    if not systems:
        return None
    found = []
    for system in systems:
        try:
            found.append(authority_of_system(registry, system))
        except UnknownAuthorityError as exc:
            raise FhirError(403, "code-invalid", f"targetSystem: {exc.message}",
                            expression="targetSystem") from None
    return found


def _source_identifier(registry: AuthorityRegistry, request: Request) -> Identifier:
    sources = request.query_params.getlist("sourceIdentifier")
    if len(sources) != 1:
        raise FhirError(400, "required", "give exactly one sourceIdentifier=urn:oid:<OID>|value",
                        expression="sourceIdentifier")
    try:
        authority, value = parse_token_identifier(registry, sources[0], "sourceIdentifier")
    except UnknownAuthorityError as exc:
        raise FhirError(400, "code-invalid", f"sourceIdentifier: {exc.message}",
                        expression="sourceIdentifier") from None
    if not value:
        raise FhirError(400, "required", "sourceIdentifier has no value",
                        expression="sourceIdentifier")
    return Identifier(authority.code, value)


def pix_parameters(uow: UnitOfWork, registry: AuthorityRegistry, request: Request,
                   base: str) -> tuple[dict[str, Any], int]:
    """The Parameters answering a PIXm query, and the person it discloses. Raises FhirError
    400 (source domain unknown), 403 (target domain unknown), 404 (identifier unknown)."""
    source = _source_identifier(registry, request)
    domains = _target_domains(registry, request)
    wanted = None if domains is None else {a.code for a in domains}
    try:
        found = cross_reference(uow, registry, source, wanted)
    except UnknownIdentifierError as exc:
        raise FhirError(404, "not-found", exc.message, expression="sourceIdentifier") from None
    person = found.person
    assert person.id is not None
    parameters: list[dict[str, Any]] = []
    for identifier in found.identifiers:
        authority = registry.by_code(identifier.authority)
        parameters.append({"name": "targetIdentifier", "valueIdentifier": {
            "system": system_of(authority), "value": identifier.value}})
    parameters.append({"name": "targetId", "valueReference": {
        "reference": f"{base}/Patient/{master_id_of(person.id)}"}})
    return {"resourceType": "Parameters", "parameter": parameters}, person.id


def conditional_identifier(registry: AuthorityRegistry, request: Request) -> Identifier:
    """The identifier of a conditional PUT or DELETE (``?identifier=urn:oid:<OID>|value``).
    Raises FhirError 400 (412 when several are given)."""
    names = {name for name, _ in request.query_params.multi_items()} - {"_format"}
    if names != {"identifier"}:
        raise FhirError(400, "invalid", "a conditional update or delete names its record with "
                        "identifier=urn:oid:<domain OID>|value and nothing else",
                        expression="identifier")
    given = request.query_params.getlist("identifier")
    if len(given) != 1:
        raise FhirError(412, "multiple-matches", "give one identifier",
                        expression="identifier")
    try:
        authority, value = parse_token_identifier(registry, given[0], "identifier")
    except UnknownAuthorityError as exc:
        raise FhirError(400, "code-invalid", exc.message, expression="identifier") from None
    if not value:
        raise FhirError(400, "required", "identifier has no value", expression="identifier")
    return Identifier(authority.code, value)


def replaced_by(registry: AuthorityRegistry, patient: Patient) -> Identifier | None:
    """The record a Patient says it is replaced by (a merge), if it says so. The link names
    it by identifier (``other.identifier``, or ``other.reference`` as
    ``Patient?identifier=urn:oid:<OID>|value``). Raises FhirError 400."""
    links = [link for link in patient.link or () if link.type == "replaced-by"]
    if not links:
        return None
    if len(links) > 1:
        raise FhirError(400, "invalid", "a Patient is replaced by one record",
                        expression="Patient.link")
    other = links[0].other
    token = None
    if other.identifier is not None and other.identifier.system and other.identifier.value:
        token = f"{other.identifier.system}|{other.identifier.value}"
    elif other.reference and other.reference.startswith("Patient?identifier="):
        token = other.reference[len("Patient?identifier="):]
    if token is None:
        raise FhirError(400, "invalid", "the replaced-by link must name the surviving record by "
                        "its identifier (other.identifier, or other.reference "
                        "Patient?identifier=urn:oid:<OID>|value)", expression="Patient.link")
    try:
        authority, value = parse_token_identifier(registry, token, "Patient.link.other")
    except UnknownAuthorityError as exc:
        raise FhirError(400, "code-invalid", exc.message, expression="Patient.link") from None
    if not value:
        raise FhirError(400, "required", "the replaced-by link names no identifier value",
                        expression="Patient.link")
    return Identifier(authority.code, value)

