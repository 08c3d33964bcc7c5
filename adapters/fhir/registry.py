"""The resources this FHIR server serves, declared once: the CapabilityStatement is built from
these declarations and the routers are mounted from them, so the statement can only tell what
is implemented.

Adding a resource: write its module with an ``APIRouter`` and a :class:`ResourceCapability`,
and list it in :data:`adapters.fhir.RESOURCES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

__all__ = ["SearchParameter", "Operation", "ResourceCapability", "capability_statement"]


@dataclass(frozen=True)
class SearchParameter:
    name: str
    type: str  # http://hl7.org/fhir/search-param-type: string, token, date...
    documentation: str
    definition: str | None = None


@dataclass(frozen=True)
class Operation:
    name: str  # without the $
    definition: str
    documentation: str


@dataclass(frozen=True)
class ResourceCapability:
    """What one resource type offers. ``interactions`` are FHIR's type-restful-interaction
    codes (read, search-type, update, delete...)."""

    type: str
    router: APIRouter
    interactions: tuple[str, ...]
    documentation: str
    search_parameters: tuple[SearchParameter, ...] = ()
    operations: tuple[Operation, ...] = ()
    supported_profiles: tuple[str, ...] = ()
    conditional_update: bool = False
    conditional_delete: str = "not-supported"  # or "single"

    def as_rest_resource(self) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "type": self.type,
            "documentation": self.documentation,
            "interaction": [{"code": code} for code in self.interactions],
            "versioning": "no-version",
            "readHistory": False,
            "updateCreate": False,
            "conditionalCreate": False,
            "conditionalRead": "not-supported",
            "conditionalUpdate": self.conditional_update,
            "conditionalDelete": self.conditional_delete,
        }
        if self.supported_profiles:
            resource["supportedProfile"] = list(self.supported_profiles)
        if self.search_parameters:
            resource["searchParam"] = [
                {key: value for key, value in (
                    ("name", p.name), ("definition", p.definition), ("type", p.type),
                    ("documentation", p.documentation)) if value}
                for p in self.search_parameters
            ]
        if self.operations:
            resource["operation"] = [
                {"name": o.name, "definition": o.definition, "documentation": o.documentation}
                for o in self.operations
            ]
        return resource


def capability_statement(resources: tuple[ResourceCapability, ...], *, version: str,
                         base_url: str, fhir_version: str, date: str,
                         token_url: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "GCS e-santé Lorraine",
        "kind": "instance",
        "software": {"name": "Nancy MPI", "version": version},
        "implementation": {"description": "Master patient index of the Nancy establishments",
                           "url": base_url},
        "fhirVersion": fhir_version,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Every interaction needs a bearer token (SMART Backend "
                             "Services: client credentials at the token endpoint, or a token "
                             "of the configured identity provider) whose scopes cover it; "
                             "writes are made in the token's establishment's domain only. "
                             "Every access is traced.",
            "security": {
                "cors": False,
                "service": [{
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                          "restful-security-service",
                                "code": "SMART-on-FHIR"}],
                    "text": "OAuth 2.0, SMART Backend Services (client credentials)"}],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/"
                           "oauth-uris",
                    "extension": [{"url": "token", "valueUri": token_url}]}],
            },
            "resource": [resource.as_rest_resource() for resource in resources],
        }],
    }
