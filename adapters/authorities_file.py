"""Reading the authorities file (TOML): identifier domains, who speaks for them, the ITI-10
consumers and the C-MOVE destinations. The one reader of that file: everything it declares
reaches the service through the :class:`AuthorityRegistry` it returns."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from adapters.errors import AdapterError
from mpi.authorities import AuthorityRegistry
from mpi.model import Authority, AuthorityKind, Consumer, MoveDestination

__all__ = ["DEFAULT_AUTHORITIES_FILE", "load_authorities", "AuthoritiesFileError"]

DEFAULT_AUTHORITIES_FILE = Path(__file__).resolve().parent / "defaults" / "authorities.toml"

T = TypeVar("T")


class AuthoritiesFileError(AdapterError, ValueError):
    """The authorities file is missing, not TOML, or inconsistent."""


def load_authorities(path: Path | str) -> AuthorityRegistry:
    """Read and check an authorities file. Raises AuthoritiesFileError naming the file and,
    for an entry that is wrong, the line where that entry starts."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthoritiesFileError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AuthoritiesFileError(f"{path}: not TOML: {exc}") from exc
    authorities = _entries(path, text, data, "authority", _authority)
    consumers = _entries(path, text, data, "consumer", _consumer)
    destinations = _entries(path, text, data, "dicom_destination", _destination)
    _check_tls_client_names(path, authorities)
    try:
        return AuthorityRegistry(authorities, consumers, destinations)
    except ValueError as exc:
        raise AuthoritiesFileError(f"{path}: {exc}") from exc


def _check_tls_client_names(path: Path, authorities: list[Authority]) -> None:
    """A certificate name speaks for one establishment only, and only establishments have
    certificates."""
    owner: dict[str, str] = {}
    for authority in authorities:
        if authority.tls_client_names and authority.kind is not AuthorityKind.ESTABLISHMENT:
            raise AuthoritiesFileError(f"{path}: {authority.code} is not an establishment: "
                                       "it cannot have tls_client_names")
        for name in authority.tls_client_names:
            if not name:
                raise AuthoritiesFileError(f"{path}: {authority.code} has an empty "
                                           "tls_client_names entry")
            if owner.setdefault(name, authority.code) != authority.code:
                raise AuthoritiesFileError(
                    f"{path}: the certificate name {name} is in the tls_client_names of "
                    f"both {owner[name]} and {authority.code}; it may speak for one only")


def _entries(path: Path, text: str, data: dict[str, Any], table: str,
             read: Callable[[dict[str, Any]], T]) -> list[T]:
    """Every ``[[table]]`` entry read by ``read``. Raises AuthoritiesFileError with the line
    of the entry that is wrong and what is wrong with it."""
    items = data.get(table, [])
    if not isinstance(items, list):
        raise AuthoritiesFileError(f"{path}: {table} must be a list of [[{table}]] tables")
    starts = [number for number, line in enumerate(text.splitlines(), start=1)
              if line.strip().replace(" ", "") == f"[[{table}]]"]
    found = []
    for index, item in enumerate(items):
        try:
            found.append(read(item))
        except KeyError as exc:
            problem = f"the key {exc.args[0]!r} is missing"
        except (ValueError, TypeError) as exc:
            problem = str(exc)
        else:
            continue
        where = f"line {starts[index]}" if index < len(starts) else f"entry {index + 1}"
        raise AuthoritiesFileError(f"{path}, {where}: [[{table}]] {problem}")
    return found


def _authority(item: dict[str, Any]) -> Authority:
    return Authority(
        code=str(item["code"]),
        name=str(item.get("name", item["code"])),
        kind=AuthorityKind(item["kind"]),
        namespace=str(item.get("namespace", item["code"])),
        oid=str(item["oid"]),
        sending_facilities=tuple(str(f) for f in item.get("sending_facilities", ())),
        ae_titles=tuple(str(t) for t in item.get("ae_titles", ())),
        tls_client_names=tuple(str(n).strip().lower()
                               for n in item.get("tls_client_names", ())),
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
