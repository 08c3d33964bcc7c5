"""The access trail: who read or changed which patient's data, when, from where, how.

Health-data hosting rules ask that every access to a patient's data be traceable. Each adapter
that serves patient data (FHIR, DICOM, DICOMweb, the review console, the CLI) records one
:class:`AuditEvent` per request through the :class:`mpi.ports.AuditTrail` port, after the
request is answered and whatever its outcome; HL7 v2 queries are traced by the journal, which
keeps every query message with its reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["AuditAction", "AuditEvent"]


class AuditAction(StrEnum):
    READ = "read"  # one resource or object by its id
    SEARCH = "search"  # a query returning zero or more patients or studies
    RETRIEVE = "retrieve"  # images or their metadata sent out
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"
    # Security events (IHE ATNA: DCM 110114 User Authentication, 110113 Security Alert).
    AUTHENTICATE = "authenticate"  # a login, a token issued, a TLS handshake accepted
    ALERT = "alert"  # a refusal: bad credentials, a token refused, a peer or handshake refused


@dataclass(frozen=True)
class AuditEvent:
    """One access. ``actor`` is who asked (a user name, an AE title, a client id), ``authority``
    the identifier domain it speaks for when known, ``source`` where from (an address).
    ``persons`` are the master person ids whose data were disclosed or changed (empty when a
    query found nobody), ``subject`` what was asked for in the protocol's own words (a URL
    path and query, a DICOM query level and keys, a study UID)."""

    occurred_at: datetime
    channel: str  # fhir, dicom, dicomweb, api, cli
    action: AuditAction
    actor: str
    subject: str
    outcome: str  # "success", or the error status / code
    authority: str | None = None
    source: str | None = None
    persons: tuple[int, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    roles: tuple[str, ...] = ()  # the authenticated principal's roles, when a person
    token_id: str | None = None  # the jti of the token (or the session) that proved it
    id: int | None = None  # given by the trail when stored
