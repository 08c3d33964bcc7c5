"""Reading the authorities file (TOML): identifier domains, who speaks for them, the ITI-10
consumers and the C-MOVE destinations. The one reader of that file: everything it declares
reaches the service through the :class:`AuthorityRegistry` it returns."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from adapters.errors import AdapterError
from mpi.authorities import AuthorityRegistry
from mpi.model import Authority, AuthorityKind, Consumer, MoveDestination

__all__ = ["DEFAULT_AUTHORITIES_FILE", "load_authorities", "AuthoritiesFileError"]

DEFAULT_AUTHORITIES_FILE = Path(__file__).resolve().parent / "defaults" / "authorities.toml"


class AuthoritiesFileError(AdapterError, ValueError):
    """The authorities file is missing, not TOML, or inconsistent."""


def load_authorities(path: Path | str) -> AuthorityRegistry:
    """Read and check an authorities file. Raises AuthoritiesFileError with the file's name."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        authorities = [_authority(item) for item in data.get("authority", [])]
        consumers = [_consumer(item) for item in data.get("consumer", [])]
        destinations = [_destination(item) for item in data.get("dicom_destination", [])]
        return AuthorityRegistry(authorities, consumers, destinations)
    except OSError as exc:
        raise AuthoritiesFileError(f"cannot read {path}: {exc}") from exc
    except (tomllib.TOMLDecodeError, KeyError, ValueError, TypeError) as exc:
        raise AuthoritiesFileError(f"{path}: {exc}") from exc


def _authority(item: dict[str, Any]) -> Authority:
    return Authority(
        code=str(item["code"]),
        name=str(item.get("name", item["code"])),
        kind=AuthorityKind(item["kind"]),
        namespace=str(item.get("namespace", item["code"])),
        oid=str(item["oid"]),
        sending_facilities=tuple(str(f) for f in item.get("sending_facilities", ())),
        ae_titles=tuple(str(t) for t in item.get("ae_titles", ())),
    )


def _consumer(item: dict[str, Any]) -> Consumer:
    return Consumer(
        name=str(item["name"]),
        host=str(item["host"]),
        port=int(item["port"]),
        domains=tuple(str(d) for d in item["domains"]),
        receiving_application=str(item.get("receiving_application", "")),
        receiving_facility=str(item.get("receiving_facility", "")),
    )


def _destination(item: dict[str, Any]) -> MoveDestination:
    return MoveDestination(ae_title=str(item["ae_title"]), host=str(item["host"]),
                           port=int(item["port"]))
