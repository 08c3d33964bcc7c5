"""What the resource modules share: where the FHIR base is, parameter checks, and the Patient
of a person."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from fastapi import Request

from adapters.fhir.mapping import patient_json
from adapters.fhir.wire import FhirError
from mpi.authorities import AuthorityRegistry
from mpi.model import Person, PersonStatus
from mpi.ports import UnitOfWork
from mpi.queries import current_person, person_view

__all__ = ["FHIR_BASE", "base_url", "only_parameters", "patient_of"]

FHIR_BASE = "/fhir"
# Parameters every interaction accepts (content negotiation checks their values).
COMMON_PARAMETERS = frozenset({"_format"})

T = TypeVar("T")


def base_url(request: Request) -> str:
    """The absolute URL of the FHIR base, as the client reached it."""
    return str(request.base_url).rstrip("/") + FHIR_BASE


def only_parameters(names: Iterable[str], allowed: Iterable[str]) -> None:
    """Raises FhirError 400 for a parameter the interaction does not know."""
    known = COMMON_PARAMETERS.union(allowed)
    for name in names:
        if name not in known:
            raise FhirError(400, "not-supported",
                            f"parameter {name!r} is not supported here (known: "
                            f"{', '.join(sorted(known))})", expression=name)


def patient_of(uow: UnitOfWork, registry: AuthorityRegistry, person: Person) -> dict[str, Any]:
    """The Patient resource of a person; a merged one links to its survivor."""
    survivor = None
    if person.status is PersonStatus.MERGED and person.merged_into is not None:
        survivor = current_person(uow, person.merged_into)
    return patient_json(person_view(uow, registry, person), registry, survivor)
