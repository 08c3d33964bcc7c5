"""The exceptions the core raises.

Every failure the core knows how to name derives from :class:`MPIError`; adapters translate
them into wire answers (HL7 ACK codes, HTTP statuses) and translate foreign exceptions into
them once, at the boundary::

    MPIError
    ├── InvalidInputError              the content of a request is wrong
    │   ├── MissingFieldError          a required value is absent
    │   ├── InvalidValueError          a value has the wrong form (e.g. an INS with a bad key)
    │   │   └── UnknownCodeError       a coded value is not in its code table (a sex code)
    │   ├── UnknownAuthorityError      an identifier names a domain we do not know
    │   └── InvalidObjectError         a DICOM object lacks what the archive needs (UIDs,
    │                                  PatientID)
    ├── UnknownIdentifierError         a known domain, but no such local identifier
    ├── DuplicateIdentifierError       the identifier already exists where it must not
    ├── ForbiddenError                 the sender may not write in that domain
    ├── IdentityConflictError          the request contradicts an identity rule (e.g. two
    │   │                              different qualified INS asserted as one person)
    │   └── StudyOwnershipError        an object names a study stored for another patient
    ├── LifecycleStateError            the archive's lifecycle refuses the step now (a
    │                                  proposal not approved yet, a hold released already)
    └── ConcurrencyError               another transaction got in the way; retrying may succeed
"""

from __future__ import annotations

__all__ = [
    "MPIError",
    "InvalidInputError",
    "MissingFieldError",
    "InvalidValueError",
    "UnknownCodeError",
    "UnknownAuthorityError",
    "InvalidObjectError",
    "UnknownIdentifierError",
    "DuplicateIdentifierError",
    "ForbiddenError",
    "IdentityConflictError",
    "StudyOwnershipError",
    "LifecycleStateError",
    "ConcurrencyError",
]


class MPIError(Exception):
    """Base of every error the core raises.

    ``location`` names where in the request the problem lies, in the caller's terms when the
    adapter knows them (for example ``"PID^1^3"``); the core leaves it to the adapter.
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location


class InvalidInputError(MPIError):
    """The content of a request is wrong."""


class MissingFieldError(InvalidInputError):
    """A required value is absent."""


class InvalidValueError(InvalidInputError):
    """A value has the wrong form."""


class UnknownCodeError(InvalidValueError):
    """A coded value is not one of its code table's (e.g. a sex code outside table 0001)."""


class UnknownAuthorityError(InvalidInputError):
    """An identifier names an assigning authority (domain) that is not declared."""


class InvalidObjectError(InvalidInputError):
    """An object lacks what the archive needs: SOP, study or series UIDs, or a PatientID."""


class UnknownIdentifierError(MPIError):
    """The domain is known but the local identifier is not."""


class DuplicateIdentifierError(MPIError):
    """The identifier already exists where the request needs it not to."""


class ForbiddenError(MPIError):
    """The sender is not allowed to do this (e.g. write in another establishment's domain)."""


class IdentityConflictError(MPIError):
    """The request contradicts an identity rule (different qualified INS, a sticky decision)."""


class StudyOwnershipError(IdentityConflictError):
    """An instance names a study already stored for another patient as received."""


class LifecycleStateError(MPIError):
    """A lifecycle step the current state refuses: approving a proposal twice, a visa before
    both approvals, destroying what was not visaed, releasing a released hold."""


class ConcurrencyError(MPIError):
    """A concurrent transaction conflicted with this one; the whole operation may be retried."""
