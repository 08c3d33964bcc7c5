"""Building acknowledgements (ACK) and query responses (RSP) in ER7.

Acknowledgement codes and HL7 table 0357 error codes live here, in the adapter: the core only
raises its own errors.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import datetime

from adapters.hl7v2.er7 import Message, Separators, escape
from mpi.authorities import AuthorityRegistry
from mpi.errors import (
    DuplicateIdentifierError,
    ForbiddenError,
    IdentityConflictError,
    InvalidValueError,
    MissingFieldError,
    MPIError,
    UnknownAuthorityError,
    UnknownCodeError,
    UnknownIdentifierError,
)
from mpi.model import Identifier

__all__ = [
    "Problem",
    "problem_from_error",
    "ReplyHeader",
    "ack",
    "cx",
    "segment",
    "err_segment",
    "ERROR_TEXTS",
    "DATABASE_UNAVAILABLE",
]

SENDING_APPLICATION = "MPI"
SENDING_FACILITY = "GCS"

# HL7 table 0357 (message error condition codes).
MESSAGE_ACCEPTED = 0  # with severity W: accepted, with a warning
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
UNKNOWN_KEY_IDENTIFIER = 204
DUPLICATE_KEY_IDENTIFIER = 205
APPLICATION_RECORD_LOCKED = 206
APPLICATION_INTERNAL_ERROR = 207

ERROR_TEXTS = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    APPLICATION_RECORD_LOCKED: "Application record locked",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
    MESSAGE_ACCEPTED: "Message accepted",
}


@dataclass(frozen=True)
class Problem:
    """Why a message was not accepted, in HL7 terms."""

    ack_code: str  # AE or AR; AA for a warning
    error_code: int  # table 0357
    text: str
    location: str | None = None
    severity: str = "E"  # ERR-4 (table 0516): E error, W warning


# From core errors to table 0357, walked in order: the first class the error is an instance
# of decides. Authorization refusals and identity conflicts have no code of their own in
# table 0357: they get 207 with an explicit text (ERR-8).
_ERROR_CODES: tuple[tuple[type[MPIError], int], ...] = (
    (MissingFieldError, REQUIRED_FIELD_MISSING),
    (UnknownAuthorityError, UNKNOWN_KEY_IDENTIFIER),
    (UnknownIdentifierError, UNKNOWN_KEY_IDENTIFIER),
    (DuplicateIdentifierError, DUPLICATE_KEY_IDENTIFIER),
    (UnknownCodeError, TABLE_VALUE_NOT_FOUND),
    (InvalidValueError, DATA_TYPE_ERROR),
    (ForbiddenError, APPLICATION_INTERNAL_ERROR),
    (IdentityConflictError, APPLICATION_INTERNAL_ERROR),
    (MPIError, APPLICATION_INTERNAL_ERROR),
)


# What the service answers when the database is out of reach: nothing applied, nothing
# journaled; the sender keeps the message and sends it again later (transient).
DATABASE_UNAVAILABLE = Problem("AE", APPLICATION_INTERNAL_ERROR,
                               "the database is unavailable; send the message again later")


def problem_from_error(error: MPIError) -> Problem:
    """Translate a core error into its acknowledgement (AE, with the code of its class)."""
    code = next(code for kind, code in _ERROR_CODES if isinstance(error, kind))
    return Problem("AE", code, error.message, error.location)


_counter = itertools.count(1)
_PREFIX = f"{os.getpid() % 100000:05d}"


def new_control_id(now: datetime) -> str:
    """A control ID unique for this process: time, process and a counter (20 characters)."""
    return f"{now:%y%m%d%H%M%S}{_PREFIX}{next(_counter) % 1000:03d}"[:20]


@dataclass(frozen=True)
class ReplyHeader:
    """What a reply takes from the message it answers."""

    receiving_application: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    trigger: str = ""
    version: str = "2.5"
    processing_id: str = "P"
    charset: str = ""
    seps: Separators = Separators()

    @classmethod
    def of(cls, message: Message) -> ReplyHeader:
        msh = message.msh
        return cls(
            receiving_application=msh.raw(3),
            receiving_facility=msh.raw(4),
            control_id=msh.value(10),
            trigger=msh.value(9, 2),
            version=msh.raw(12) or "2.5",
            processing_id=msh.raw(11) or "P",
            charset=msh.raw(18),
            seps=message.seps,
        )


def cx(identifier: Identifier, registry: AuthorityRegistry, seps: Separators) -> str:
    """An identifier as a CX: value^^^namespace&OID&ISO^type (INS for the national domains,
    PI otherwise)."""
    authority = registry.by_code(identifier.authority)
    type_code = "INS" if authority.is_national else "PI"
    hd = seps.subcomponent.join([escape(authority.namespace, seps), authority.oid, "ISO"])
    return seps.component.join([escape(identifier.value, seps), "", "", hd, type_code])


def segment(seps: Separators, *fields: str) -> str:
    """Join fields already escaped (components joined with the component separator)."""
    return seps.field.join(fields).rstrip(seps.field)


def msh(header: ReplyHeader, message_type: str, now: datetime) -> str:
    s = header.seps
    return segment(
        s, "MSH", s.encoding_characters, SENDING_APPLICATION, SENDING_FACILITY,
        header.receiving_application, header.receiving_facility, f"{now:%Y%m%d%H%M%S}", "",
        message_type, new_control_id(now), header.processing_id, header.version,
        "", "", "", "", "", header.charset,
    )


def err_segment(header: ReplyHeader, problem: Problem) -> str:
    s = header.seps
    location = (problem.location or "").replace("^", s.component)
    code = s.component.join(
        [str(problem.error_code), ERROR_TEXTS.get(problem.error_code, ""), "HL70357"]
    )
    return segment(s, "ERR", "", location, code, problem.severity, "", "", "",
                   escape(problem.text, s))


def ack(header: ReplyHeader, now: datetime, problem: Problem | None = None) -> str:
    """An original-mode ACK: AA, or AE/AR with an ERR segment (AA with one: a warning)."""
    s = header.seps
    trigger = header.trigger or ""
    lines = [
        msh(header, s.component.join(["ACK", trigger, "ACK"]) if trigger else "ACK", now),
        segment(s, "MSA", problem.ack_code if problem else "AA", escape(header.control_id, s)),
    ]
    if problem is not None:
        lines.append(err_segment(header, problem))
    return "\r".join(lines) + "\r"
