"""$match (ITI-119): the persons a Patient resource could be, best first, read-only.

The core finds and grades the candidates (:func:`mpi.matching.candidates.graded_candidates`:
the same engine as the feed, and a qualified INS in the input, reliability VALI or QUAL in the
identity-reliability extension, makes its holder a certain match); this module reads the
Parameters, turns the Patient into a record and the graded candidates into a Bundle. Persons
below :data:`MINIMUM_PROBABILITY` are not proposed.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.patient import Patient

from adapters.fhir.common import patient_of
from adapters.fhir.mapping import (
    EXTENSION_BASE,
    authority_of_system,
    demographics_of,
    is_qualified,
    reliability_of,
)
from adapters.fhir.wire import FhirError
from mpi.authorities import AuthorityRegistry
from mpi.errors import UnknownAuthorityError
from mpi.matching.candidates import MatchGrade, graded_candidates
from mpi.matching.engine import ProbabilisticMatcher
from mpi.model import Demographics, Identifier, SourceRecord, master_id_of
from mpi.normalize import nir_problem
from mpi.ports import UnitOfWork

__all__ = ["MATCH_GRADE_EXTENSION", "MATCH_EVIDENCE_EXTENSION", "MatchRequest",
           "parse_match_request", "match_bundle"]

MATCH_GRADE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/match-grade"
MATCH_EVIDENCE_EXTENSION = EXTENSION_BASE + "match-evidence"
MINIMUM_PROBABILITY = 0.05
DEFAULT_COUNT = 10
MAX_COUNT = 100


class MatchRequest:
    def __init__(self, patient: Patient, only_certain: bool, count: int) -> None:
        self.patient = patient
        self.only_certain = only_certain
        self.count = count


def parse_match_request(body: dict[str, Any]) -> MatchRequest:
    """Raises FhirError 400 when the body is not a valid Parameters with one Patient."""
    if body.get("resourceType") != "Parameters":
        raise FhirError(400, "invalid", "$match takes a Parameters resource",
                        expression="Parameters")
    try:
        parameters = Parameters.model_validate(body)
    except Exception as exc:  # pydantic and fhir.resources report invalid input variously
        raise FhirError(400, "invalid", f"not a valid FHIR R4 Parameters: {exc}",
                        expression="Parameters") from None
    patient: Patient | None = None
    only_certain, count = False, DEFAULT_COUNT
    for parameter in parameters.parameter or ():
        where = f"Parameters.parameter('{parameter.name}')"
        if parameter.name == "resource":
            if patient is not None or not isinstance(parameter.resource, Patient):
                raise FhirError(400, "invalid", "resource must be one Patient", expression=where)
            patient = parameter.resource
        elif parameter.name == "onlyCertainMatches":
            if parameter.valueBoolean is None:
                raise FhirError(400, "invalid", "onlyCertainMatches is a valueBoolean",
                                expression=where)
            only_certain = bool(parameter.valueBoolean)
        elif parameter.name == "count":
            if parameter.valueInteger is None or not 1 <= parameter.valueInteger:
                raise FhirError(400, "invalid", "count is a positive valueInteger",
                                expression=where)
            count = min(int(parameter.valueInteger), MAX_COUNT)
        else:
            raise FhirError(400, "not-supported", f"unknown $match parameter "
                            f"{parameter.name!r}", expression=where)
    if patient is None:
        raise FhirError(400, "required", "$match needs the resource parameter (a Patient)",
                        expression="Parameters.parameter('resource')")
    return MatchRequest(patient, only_certain, count)


def _input_record(registry: AuthorityRegistry, patient: Patient) -> SourceRecord:
    """The Patient as a record that is not stored (identifiers of unknown systems ignored)."""
    reliability = reliability_of(patient)
    ins = None
    for given in patient.identifier or ():
        try:
            authority = authority_of_system(registry, given.system or "")
        except UnknownAuthorityError:
            continue
        if authority.is_national and given.value:
            problem = nir_problem(given.value)
            if problem is not None:
                raise FhirError(400, "invalid", problem, expression="Patient.identifier")
            ins = Identifier(authority.code, given.value)
    demographics = Demographics().apply(demographics_of(patient))
    return SourceRecord(identifier=Identifier("", ""), demographics=demographics,
                        ins=ins if ins is not None and is_qualified(reliability) else None,
                        reliability=reliability)


def _grade_extensions(grade: MatchGrade, evidence: dict[str, Any]) -> list[dict[str, Any]]:
    fields = [{"url": name, "valueCode": str(level["level"])}
              for name, level in sorted(evidence.get("fields", {}).items())]
    if evidence.get("ins"):
        fields.insert(0, {"url": "ins", "valueCode": "exact"})
    return [{"url": MATCH_GRADE_EXTENSION, "valueCode": grade.value},
            {"url": MATCH_EVIDENCE_EXTENSION, "extension": fields}]


def match_bundle(uow: UnitOfWork, registry: AuthorityRegistry, matcher: ProbabilisticMatcher,
                 request: MatchRequest, base: str) -> tuple[dict[str, Any], list[int]]:
    """The Bundle of candidates, best first, and the persons it discloses."""
    record = _input_record(registry, request.patient)
    candidates = graded_candidates(uow, registry, matcher, record, request.count,
                                   MINIMUM_PROBABILITY, only_certain=request.only_certain)
    entries, persons = [], []
    for candidate in candidates:
        person = uow.persons.get(candidate.person_id)
        if person is None:
            continue
        persons.append(candidate.person_id)
        entries.append({
            "fullUrl": f"{base}/Patient/{master_id_of(candidate.person_id)}",
            "resource": patient_of(uow, registry, person),
            "search": {"extension": _grade_extensions(candidate.grade, candidate.evidence),
                       "mode": "match", "score": round(min(max(candidate.score, 0.0), 1.0), 6)},
        })
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "total": len(entries)}
    if entries:
        bundle["entry"] = entries
    return bundle, persons
