"""The registry of identifier domains and of the systems that speak for them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from mpi.errors import UnknownAuthorityError
from mpi.model import Authority, AuthorityKind, Consumer, MoveDestination

__all__ = ["AuthorityRegistry"]

_OID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


class AuthorityRegistry:
    """Looks authorities up by code, HL7 namespace, OID, sending facility or AE title.

    Raises ValueError at construction when the declarations are inconsistent (duplicate code,
    OID or namespace; no master domain; a facility claimed by two establishments).
    """

    def __init__(self, authorities: Iterable[Authority], consumers: Iterable[Consumer] = (),
                 destinations: Iterable[MoveDestination] = ()) -> None:
        self._all = tuple(authorities)
        self.consumers = tuple(consumers)
        self.destinations: dict[str, MoveDestination] = {}
        for destination in destinations:
            title = destination.ae_title.strip().upper()
            if title in self.destinations:
                raise ValueError(f"C-MOVE destination {title!r} is declared twice")
            self.destinations[title] = destination
        self._by_code: dict[str, Authority] = {}
        self._by_oid: dict[str, Authority] = {}
        self._by_namespace: dict[str, Authority] = {}
        self._by_facility: dict[str, Authority] = {}
        self._by_ae_title: dict[str, Authority] = {}
        for authority in self._all:
            _put_unique(self._by_code, authority.code, authority, "code")
            _put_unique(self._by_oid, authority.oid, authority, "OID")
            _put_unique(self._by_namespace, authority.namespace.upper(), authority, "namespace")
            for facility in authority.sending_facilities:
                _put_unique(self._by_facility, facility.upper(), authority, "sending facility")
            for title in authority.ae_titles:
                _put_unique(self._by_ae_title, title.upper(), authority, "AE title")
        masters = [a for a in self._all if a.kind is AuthorityKind.MASTER]
        if len(masters) != 1:
            raise ValueError(f"exactly one master domain is required, found {len(masters)}")
        self.master = masters[0]
        for consumer in self.consumers:
            for domain in consumer.domains:
                if domain not in self._by_code:
                    raise ValueError(f"consumer {consumer.name} asks for unknown domain {domain}")

    def __iter__(self) -> Iterator[Authority]:
        return iter(self._all)

    @property
    def all(self) -> tuple[Authority, ...]:
        return self._all

    def destination(self, ae_title: str) -> MoveDestination | None:
        """The C-MOVE destination of that AE title (case and spaces ignored), if declared."""
        return self.destinations.get(ae_title.strip().upper())

    def by_code(self, code: str) -> Authority:
        """Raises UnknownAuthorityError for a code that is not declared."""
        try:
            return self._by_code[code]
        except KeyError:
            raise UnknownAuthorityError(f"unknown identifier domain {code!r}") from None

    def named(self, text: str) -> Authority:
        """The domain a person or a file names in one word: its code, its OID (bare or
        ``urn:oid:``) or its namespace. Raises UnknownAuthorityError."""
        text = text.strip()
        try:
            return self.by_code(text)
        except UnknownAuthorityError:
            if _OID.match(text.removeprefix("urn:oid:")):
                return self.find(oid=text)
            return self.find(namespace=text)

    def find(self, *, namespace: str | None = None, oid: str | None = None) -> Authority:
        """Resolve an assigning authority given as a namespace, an OID or both.

        The OID decides when present; a namespace that contradicts it is an error. Raises
        UnknownAuthorityError when nothing matches or the two disagree.
        """
        namespace = (namespace or "").strip()
        oid = (oid or "").strip()
        if oid.lower().startswith("urn:oid:"):
            oid = oid[len("urn:oid:"):]
        if oid:
            authority = self._by_oid.get(oid)
            if authority is None:
                raise UnknownAuthorityError(f"unknown identifier domain OID {oid!r}")
            if namespace and namespace.upper() not in (
                authority.namespace.upper(),
                authority.code.upper(),
            ):
                raise UnknownAuthorityError(
                    f"namespace {namespace!r} does not match the domain of OID {oid!r}"
                )
            return authority
        if namespace:
            authority = self._by_namespace.get(namespace.upper()) or self._by_code.get(namespace)
            if authority is None:
                raise UnknownAuthorityError(f"unknown identifier domain {namespace!r}")
            return authority
        raise UnknownAuthorityError("the identifier names no domain")

    def for_facility(self, facility: str) -> Authority | None:
        """The establishment an HL7 sending facility (MSH-4) speaks for, if declared."""
        return self._by_facility.get(facility.strip().upper())

    def for_ae_title(self, ae_title: str) -> Authority | None:
        """The establishment a DICOM calling AE title speaks for, if declared."""
        return self._by_ae_title.get(ae_title.strip().upper())

    def consumer(self, name: str) -> Consumer:
        for consumer in self.consumers:
            if consumer.name == name:
                return consumer
        raise KeyError(name)


def _put_unique(index: dict[str, Authority], key: str, authority: Authority, what: str) -> None:
    if key in index and index[key] is not authority:
        raise ValueError(f"{what} {key!r} is declared twice ({index[key].code}, {authority.code})")
    index[key] = authority
