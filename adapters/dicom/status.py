"""The one table from errors to DICOM statuses: what a refused object gets, over C-STORE
(the DIMSE status) and STOW-RS (the FailureReason of its FailedSOPSequence item).

| status | cause |
|---|---|
| 0xC000 | not DICOM, truncated or malformed |
| 0xA900 | SOP Instance, Study or Series Instance UID missing or malformed, no PatientID |
| 0xC001 | IssuerOfPatientID names an undeclared or non-establishment domain, or the sender may
|        | not write a patient of that domain |
| 0xC002 | the study is stored for another patient as received |
| 0xC003 | another identity rule refuses the object |
| 0xA700 | the object could not be written (archive volume full or failing, database out of
|        | reach): nothing of it was kept; send it again (STOW-RS: 503 with Retry-After when
|        | no object of the request could be written for that reason) |
"""

from __future__ import annotations

from adapters.dicom.header import UnreadableObjectError
from adapters.errors import DatabaseUnavailableError
from mpi.errors import (
    ForbiddenError,
    InvalidObjectError,
    MPIError,
    StudyOwnershipError,
    UnknownAuthorityError,
)

__all__ = ["CANNOT_UNDERSTAND", "INVALID_OBJECT", "REFUSED_DOMAIN", "STUDY_CONFLICT",
           "REFUSED_BY_RULE", "OUT_OF_RESOURCES", "NOT_AUTHORIZED", "store_failure",
           "must_retry"]

CANNOT_UNDERSTAND = 0xC000
INVALID_OBJECT = 0xA900
REFUSED_DOMAIN = 0xC001
STUDY_CONFLICT = 0xC002
REFUSED_BY_RULE = 0xC003
OUT_OF_RESOURCES = 0xA700
NOT_AUTHORIZED = 0x0124  # the calling AE title speaks for no declared establishment

# Walked in order: the first class the error is an instance of decides.
_STORE_FAILURES: tuple[tuple[type[BaseException], int], ...] = (
    (UnreadableObjectError, CANNOT_UNDERSTAND),
    (InvalidObjectError, INVALID_OBJECT),
    (UnknownAuthorityError, REFUSED_DOMAIN),
    (ForbiddenError, REFUSED_DOMAIN),
    (StudyOwnershipError, STUDY_CONFLICT),
    (MPIError, REFUSED_BY_RULE),
    (DatabaseUnavailableError, OUT_OF_RESOURCES),
    (OSError, OUT_OF_RESOURCES),  # the archive volume full or failing
)


def must_retry(reasons: list[int]) -> bool:
    """Whether a STOW-RS request whose objects failed for ``reasons`` (none stored) is
    answered 503, Service Unavailable: every failure was OUT_OF_RESOURCES."""
    return bool(reasons) and all(reason == OUT_OF_RESOURCES for reason in reasons)


def store_failure(error: BaseException) -> int:
    """The status of an object that could not be stored because of ``error``; anything not
    in the table (a database failure) is OUT_OF_RESOURCES: the sender may try again."""
    for kind, status in _STORE_FAILURES:
        if isinstance(error, kind):
            return status
    return OUT_OF_RESOURCES
