"""The service's log: one line per HL7 message, DICOM association and operation, HTTP request
and refusal, at INFO; text by default, one JSON object per line with ``--log-format json``.

What a line may hold: who (a sending facility, an AE title, a client, a user), what (a message
type, an operation, a route template), the outcome and its duration. Never a patient's name or
identifier, never a secret: those are in the access trail, which is access-controlled. Lines
are written through :func:`log_event`, whose fields become ``key=value`` pairs in text and
keys of the JSON object.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging", "log_event", "TEXT_FORMAT"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose INFO lines are protocol chatter (one per PDU for pynetdicom): shown only
# when the operator asks for debug.
_CHATTY = ("pynetdicom", "uvicorn.access", "multipart", "alembic.runtime.migration")


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
