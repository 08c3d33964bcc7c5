"""schemathesis against openapi.yaml and the real service on loopback: whatever the document
allows a client to send, the service answers without a 5xx and as the document says (status,
content type, headers, body schema)."""

from __future__ import annotations

from pathlib import Path

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from tests.service import start_service

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = 20


@schemathesis.serializer("multipart/related")
def _multipart_related(ctx: object, value: object) -> bytes:
    """STOW-RS bodies: whatever bytes the strategy drew, as a (most often malformed)
    multipart/related body; the service must refuse those with a 4xx, never a 5xx."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]


def test_no_request_the_document_allows_gets_a_5xx_or_an_undocumented_answer(
    database_url: str, tmp_path: Path
) -> None:
    schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /fhir/Patient", "PUT /fhir/Patient",
                                                "POST /fhir/Patient/$match",
                                                "POST /oauth/token"}
    service = start_service(database_url, tmp_path)
    # A system of the CHRU that may do everything (so that the requests reach past the door),
    # and nobody at all (so that the refusals are checked too).
    authorized = requests.Session()
    authorized.headers.update(service.bearer(establishment="CHRU"))
    anonymous = requests.Session()
    statuses: dict[str, set[int]] = {"authorized": set(), "anonymous": set()}
    calls: dict[str, int] = {}
    try:
        for operation in operations:
            for who, session, examples in (("authorized", authorized, EXAMPLES_PER_OPERATION),
                                           ("anonymous", anonymous, 3)):

                @given(case=operation.as_strategy())
                @settings(max_examples=examples, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=list(HealthCheck))
                def exercise(case: schemathesis.Case) -> None:
                    # Run at once, within this iteration: the loop variables are the right ones.
                    response = case.call(base_url=service.http_base,
                                         session=session, timeout=30)  # noqa: B023
                    statuses[who].add(response.status_code)  # noqa: B023
                    calls[operation.label] = calls.get(operation.label, 0) + 1  # noqa: B023
                    case.validate_response(response, checks=CHECKS)

                exercise()
    finally:
        authorized.close()
        anonymous.close()
        service.stop()
    assert set(calls) == {op.label for op in operations}
    assert sum(calls.values()) >= 5 * len(operations)
    assert statuses["authorized"] & {200, 201} and statuses["authorized"] & {400, 404}
    assert 401 in statuses["anonymous"]
