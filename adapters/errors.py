"""The base of the errors only adapters raise, and the rule of where errors are translated.

The core raises :class:`mpi.errors.MPIError` and its subclasses; each protocol maps them to its
own answers in one table in its adapter (``adapters/hl7v2/replies.py`` for HL7 ERR codes,
``adapters/fhir/errors.py`` for FHIR OperationOutcomes, ``adapters/dicom/status.py`` for DICOM
statuses, ``adapters/http/errors.py`` for the JSON API). What only an adapter can find wrong
(a frame, a file, a wire format, a configuration) derives from :class:`AdapterError`, never
from a core error::

    AdapterError
    ├── AuthoritiesFileError      adapters/authorities_file.py: the authorities file
    ├── DatabaseNotReadyError     adapters/bootstrap.py: the schema is behind the code
    ├── DatabaseUnavailableError  raised by adapters/sql: the database is out of reach
    ├── UnknownJobError           adapters/jobs.py: no job of that name
    ├── UnusableFileError         adapters/bulk_import.py: a file `mpi import` cannot read
    ├── ParseError                adapters/hl7v2/er7.py: not ER7
    ├── UnsupportedCharsetError   adapters/hl7v2/charset.py: MSH-18 names no known charset
    ├── MessageDecodingError      adapters/hl7v2/charset.py: bytes not in that charset
    ├── UnsupportedEventError     adapters/hl7v2/adt.py: an event the feed does not take
    ├── MLLPError                 adapters/hl7v2/mllp.py: the peer broke the framing
    ├── UnreadableObjectError     adapters/dicom/header.py: not DICOM, truncated, malformed
    ├── MultipartError            adapters/dicom/spool.py: not the multipart body it claims
    ├── UnsupportedInPlaceError   adapters/dicom/service.py: in-place import off the filesystem
    └── FhirError                 adapters/fhir/wire.py: a FHIR answer other than success
"""

from __future__ import annotations

__all__ = ["AdapterError", "DatabaseUnavailableError"]


class AdapterError(Exception):
    """An error only an adapter can find: ``message`` says what, ``location`` where in the
    input when known (in the protocol's own terms)."""

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location


class DatabaseUnavailableError(AdapterError):
    """The database cannot be reached (stopped, restarting, the network cut) or cannot
    write: nothing of the unit of work was applied, the same request may succeed later.
    Raised by ``adapters/sql`` (its translation of the driver's errors); each protocol
    answers it with its own "try again": HL7 AE, DICOM 0xA700, HTTP 503 with Retry-After."""
