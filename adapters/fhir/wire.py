"""What every FHIR answer is made of: a JSON resource, or a FhirError that becomes an
OperationOutcome."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import Response

from adapters.errors import AdapterError

__all__ = ["FHIR_JSON", "FHIR_VERSION", "FhirResponse", "FhirError", "operation_outcome"]

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"


class FhirResponse(Response):
    """A FHIR resource as JSON, the ``application/fhir+json`` way."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class FhirError(AdapterError):
    """A FHIR request that fails: HTTP ``status``, issue ``code``
    (http://hl7.org/fhir/issue-type), a readable ``diagnostics`` and, when known, the
    ``expression`` naming the faulty element or parameter."""

    def __init__(self, status: int, code: str, diagnostics: str, *,
                 expression: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics, location=expression)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression
        self.headers = headers


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error",
                      expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
