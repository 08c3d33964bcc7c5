"""The service's log: one line per HL7 message, DICOM association and operation, HTTP request
and refusal, at INFO; text by default, one JSON object per line with ``--log-format json``.

What a line may hold: who (a sending facility, an AE title, a client, a user), what (a message
type, an operation, a route template), the outcome and its duration. Never a patient's name or
identifier, never a secret: those are in the access trail, which is access-controlled. Lines
are written through :func:`log_event`, whose fields become ``key=value`` pairs in text and
keys of the JSON object.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging", "log_event", "TEXT_FORMAT", "request_id", "request_scope",
           "bind_request_id", "new_request_id", "RequestIdFilter"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose INFO lines are protocol chatter (one per PDU for pynetdicom): shown only
# when the operator asks for debug.
_CHATTY = ("pynetdicom", "uvicorn.access", "multipart", "alembic.runtime.migration")


_request_id: ContextVar[str | None] = ContextVar("mpi_request_id", default=None)
_GIVEN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id(given: str | None = None) -> str:
    """A fresh request id, or ``given`` when it is a harmless one (see the module)."""
    if given and _GIVEN_ID.match(given):
        return given
    return uuid.uuid4().hex[:16]


def request_id() -> str | None:
    """The id of the exchange being answered, None outside one."""
    return _request_id.get()


def bind_request_id(value: str) -> None:
    """Name the exchange this thread answers from now on (a DICOM association's thread)."""
    _request_id.set(value)


@contextlib.contextmanager
def request_scope(value: str | None = None) -> Iterator[str]:
    """Answer one exchange under a request id (a fresh one unless given); yields it."""
    current = value or new_request_id()
    token = _request_id.set(current)
    try:
        yield current
    finally:
        _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds the current request id to each record (``request_id``, absent outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


def configure_logging(level: str = "info", log_format: str = "text",
                      process: str | None = None) -> None:
    """Set the root logger up for the service (idempotent). ``process`` names a helper
    process (``worker``) in every line it writes."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"process_role": process} if process else None))
    else:
        suffix = f"[{process}]" if process else ""
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.replace("%(name)s",
                                                                   "%(name)s" + suffix)))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)


# Attributes of every log record: a field of that name would clash with it.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def log_event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """One line: ``message`` followed by its fields (``key=value``; in JSON, keys of their
    own). Fields whose value is None are left out."""
    present = {(f"{key}_" if key in _RESERVED else key): value
               for key, value in fields.items() if value is not None}
    if not logger.isEnabledFor(level):
        return
    text = " ".join(f"{key}={_shown(value)}" for key, value in present.items())
    logger.log(level, f"{message} {text}" if text else message, extra=present)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text
