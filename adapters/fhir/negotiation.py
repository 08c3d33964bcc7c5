"""Content negotiation and the wire format: JSON only (``application/fhir+json``).

``_format`` (json, application/json, application/fhir+json) wins over the Accept header; any
other format, XML included, is refused with 406. Request bodies must be JSON.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request

from adapters.fhir.wire import FHIR_JSON, FhirError

__all__ = ["negotiate_format", "read_json_body", "read_form_body", "check_text"]

JSON_FORMATS = frozenset({"json", "application/json", FHIR_JSON})
_ACCEPTABLE_RANGES = frozenset({"*/*", "application/*", "application/json", FHIR_JSON})
_JSON_BODY_TYPES = frozenset({"application/json", FHIR_JSON})
FORM = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 1 << 20


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _fail(status: int, code: str, message: str, expression: str | None = None) -> FhirError:
    return FhirError(status, code, message, expression=expression)


def check_text(value: str, where: str) -> str:
    """Refuse control characters a database cannot store (NUL) in anything a client sends."""
    if "\x00" in value:
        raise _fail(400, "invalid", f"{where} holds a NUL character", where)
    return value


def negotiate_format(request: Request) -> None:
    """Raises FhirError 406 when the client asks for a format other than JSON, 400 for a
    query string holding NUL characters."""
    for name, value in request.query_params.multi_items():
        check_text(name, "query parameter name")
        check_text(value, name)
    formats = request.query_params.getlist("_format")
    if formats:
        for wanted in formats:
            if _media_type(wanted) not in JSON_FORMATS:
                raise _fail(406, "not-supported",
                            f"_format {wanted!r} is not supported: this server speaks JSON "
                            "(json, application/json, application/fhir+json)", "_format")
        return
    accept = request.headers.get("accept")
    if accept and not any(_media_type(r) in _ACCEPTABLE_RANGES for r in accept.split(",")):
        raise _fail(406, "not-supported",
                    f"Accept {accept!r}: this server answers application/fhir+json only")


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise _fail(413, "too-costly", f"the body exceeds {MAX_BODY_BYTES} bytes")
    return body


def _without_nul(value: Any, where: str) -> None:
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, where)
            _without_nul(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _without_nul(item, where)


async def read_json_body(request: Request) -> dict[str, Any]:
    """The JSON object a request carries. Raises FhirError 415 for another content type,
    400 for an empty or malformed body or one that is not an object."""
    content_type = request.headers.get("content-type")
    if content_type and _media_type(content_type) not in _JSON_BODY_TYPES:
        raise _fail(415, "not-supported",
                    f"Content-Type {content_type!r}: send application/fhir+json")
    body = await _body(request)
    if not body.strip():
        raise _fail(400, "required", "the request needs a JSON body")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _fail(400, "structure", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(400, "structure", "the body must be a JSON object (a FHIR resource)")
    kind = data.get("resourceType")
    _without_nul(data, kind if isinstance(kind, str) else "body")
    return data


async def read_form_body(request: Request) -> list[tuple[str, str]]:
    """The parameters of a form-encoded body (POST search). Raises FhirError 415 for another
    content type, 400 for one that cannot be decoded."""
    content_type = request.headers.get("content-type")
    if content_type is None or _media_type(content_type) != FORM:
        raise _fail(415, "not-supported", f"a POST search is sent as {FORM}")
    body = await _body(request)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(400, "structure", f"the form body cannot be read: {exc}") from None
    for name, value in pairs:
        check_text(name, "form parameter name")
        check_text(value, name)
    return pairs
