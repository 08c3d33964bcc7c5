"""Who may do what, as plain data: principals, the roles of people, the SMART v2 scopes of
systems, and the registered clients and user accounts (no cryptography here: the adapters
hash secrets and sign tokens).

Reads are regional: any authenticated principal allowed to read a resource reads the whole
history of a patient, from every establishment (that is the point of the shared archive).
Writes stay in the principal's own identifier domain: a system registered for an establishment
writes only there, a regional system (no establishment) never writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from mpi.errors import InvalidValueError

__all__ = [
    "Role",
    "ROLES",
    "Scope",
    "parse_scopes",
    "scopes_text",
    "covers",
    "Principal",
    "ApiClient",
    "UserAccount",
    "ClientRepository",
    "UserRepository",
    "AssertionRepository",
    "UserSession",
    "SessionRepository",
    "SecurityUnitOfWork",
    "ROLE_PERMISSIONS",
]


class Role(StrEnum):
    """What a person may do, given by an administrator (`mpi user add --role`)."""

    CLINICIAN = "clinician"  # read patients and studies
    IDENTITY_VIGILANCE = "identity-vigilance"  # the review queue: link, unlink, merge
    ARCHIVIST = "archivist"  # legal holds, destruction proposals, visas
    DIM = "dim"  # the medical information department's opinion on a destruction
    DIRECTOR = "director"  # the establishment director's decision on a destruction
    AUDITOR = "auditor"  # the audit trail
    ADMIN = "admin"  # users and clients


ROLES: tuple[str, ...] = tuple(role.value for role in Role)

# FHIR-style resource interactions of SMART v2 scopes: create, read, update, delete, search.
_INTERACTIONS = "cruds"
_SCOPE = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.([cruds]+)$")
# The resources our scopes speak of (QIDO-RS/WADO-RS are ImagingStudy reads, STOW-RS its
# create: our reading of SMART for DICOMweb; Metrics.r reads /metrics: ours).
RESOURCES = ("Patient", "ImagingStudy", "AuditEvent", "Metrics")


@dataclass(frozen=True, order=True)
class Scope:
    """One SMART v2 scope, e.g. ``system/Patient.rs``; ``resource`` ``*`` is every one."""

    context: str
    resource: str
    interactions: str

    def __str__(self) -> str:
        return f"{self.context}/{self.resource}.{self.interactions}"

    def allows(self, resource: str, interaction: str) -> bool:
        return (self.resource in ("*", resource)) and interaction in self.interactions

    def within(self, granted: Iterable[Scope]) -> bool:
        """Whether every interaction of this scope is allowed by ``granted``."""
        resources = RESOURCES if self.resource == "*" else (self.resource,)
        return all(any(g.context == self.context and g.allows(resource, interaction)
                       for g in granted)
                   for resource in resources for interaction in self.interactions)


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """The scopes of a space-separated list (``system/Patient.rs system/ImagingStudy.c``).
    Raises InvalidValueError naming the first scope that is not SMART v2 syntax or names a
    resource the service does not serve."""
    found = []
    for word in text.split():
        match = _SCOPE.match(word)
        if match is None:
            raise InvalidValueError(f"scope {word!r} is not CONTEXT/RESOURCE.PERMISSIONS "
                                    "(e.g. system/Patient.rs)")
        context, resource, interactions = match.groups()
        if resource != "*" and resource not in RESOURCES:
            raise InvalidValueError(f"scope {word!r}: no resource {resource} here "
                                    f"({', '.join(RESOURCES)} or *)")
        ordered = "".join(c for c in _INTERACTIONS if c in interactions)
        found.append(Scope(context, resource, ordered))
    return tuple(sorted(set(found)))


def scopes_text(scopes: Iterable[Scope]) -> str:
    return " ".join(str(s) for s in sorted(set(scopes)))


def covers(scopes: Iterable[Scope], resource: str, interaction: str) -> bool:
    """Whether any of the scopes allows ``interaction`` (c, r, u, d or s) on ``resource``."""
    return any(s.allows(resource, interaction) for s in scopes)


# What each role of a person allows on the resources (the same vocabulary as scopes).
ROLE_PERMISSIONS: dict[str, tuple[Scope, ...]] = {
    Role.CLINICIAN: parse_scopes("user/Patient.rs user/ImagingStudy.rs"),
    Role.IDENTITY_VIGILANCE: parse_scopes("user/Patient.rs user/ImagingStudy.rs"),
    Role.ARCHIVIST: parse_scopes("user/ImagingStudy.rs"),
    Role.DIM: parse_scopes("user/ImagingStudy.rs"),
    Role.DIRECTOR: parse_scopes("user/ImagingStudy.rs"),
    Role.AUDITOR: parse_scopes("user/AuditEvent.rs"),
    Role.ADMIN: (),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a system (``client``) with its scopes, or a person
    (``user``) with its roles; the establishment it speaks for (None: regional); the token
    that proved it (its ``jti``) and where it came from."""

    kind: str  # "client" or "user"
    name: str
    establishment: str | None = None
    roles: frozenset[str] = frozenset()
    scopes: tuple[Scope, ...] = ()
    token_id: str | None = None
    source: str | None = None
    issuer: str | None = None  # the identity provider, when not this service

    @property
    def actor_name(self) -> str:
        """How the access trail names it: ``client:NAME`` or ``user:NAME``."""
        return f"{self.kind}:{self.name}"

    def permissions(self) -> tuple[Scope, ...]:
        if self.kind == "client":
            return self.scopes
        return tuple(s for role in sorted(self.roles) for s in ROLE_PERMISSIONS.get(role, ()))

    def may(self, resource: str, interaction: str) -> bool:
        """Whether this principal may do ``interaction`` on ``resource`` (scopes of a
        system, roles of a person)."""
        return covers(self.permissions(), resource, interaction)

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


@dataclass
class ApiClient:
    """A system registered to call the HTTP API (`mpi client add`): it authenticates with a
    secret (kept only as a slow hash) or with JWTs signed by one of its keys (a JWK set given
    inline or at a URL). Without an establishment it is a regional system: it reads, never
    writes."""

    client_id: str
    name: str
    scopes: tuple[Scope, ...]
    establishment: str | None = None
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass
class UserAccount:
    """A person's local account (`mpi user add`): a password kept only as a slow hash, roles,
    the establishment it belongs to (None: regional staff)."""

    name: str
    password_hash: str
    roles: frozenset[str] = field(default_factory=frozenset)
    establishment: str | None = None
    created_at: datetime | None = None
    disabled_at: datetime | None = None

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None


class ClientRepository(Protocol):
    def get(self, client_id: str) -> ApiClient | None: ...

    def named(self, name: str) -> ApiClient | None: ...

    def add(self, client: ApiClient) -> None:
        """Raises DuplicateIdentifierError when the name or the client id exists."""
        ...

    def save(self, client: ApiClient) -> None: ...

    def all(self) -> list[ApiClient]: ...


class UserRepository(Protocol):
    def get(self, name: str) -> UserAccount | None: ...

    def add(self, user: UserAccount) -> None:
        """Raises DuplicateIdentifierError when the name exists."""
        ...

    def save(self, user: UserAccount) -> None: ...

    def all(self) -> list[UserAccount]: ...

    def count(self) -> int: ...


@dataclass
class UserSession:
    """A person logged in to the console: the session cookie's token is kept only as its
    SHA-256; ``csrf`` is the token every form of the session must carry. A person of an
    identity provider has no local account: ``issuer`` names the provider, and the session
    keeps the roles and establishment it vouched for at login."""

    token_hash: str
    user_name: str
    csrf: str
    created_at: datetime
    expires_at: datetime
    source: str | None = None
    revoked_at: datetime | None = None
    issuer: str | None = None
    roles: frozenset[str] | None = None
    establishment: str | None = None


class SessionRepository(Protocol):
    def add(self, session: UserSession) -> None: ...

    def by_token_hash(self, token_hash: str) -> UserSession | None: ...

    def revoke(self, token_hash: str, when: datetime) -> None: ...

    def revoke_user(self, user_name: str, when: datetime) -> int:
        """End every session of a person (disabled account, changed password)."""
        ...


class AssertionRepository(Protocol):
    """The ``jti`` of the client assertions accepted, kept until they expire: an assertion is
    never accepted twice."""

    def remember(self, jti: str, client_id: str, expires_at: datetime) -> bool:
        """Record a jti; False when it was already recorded (a replay)."""
        ...

    def forget_expired(self, now: datetime) -> int: ...


class SecurityUnitOfWork(Protocol):
    """A unit of work that also holds the clients, users and accepted assertions."""

    @property
    def clients(self) -> ClientRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def assertions(self) -> AssertionRepository: ...

    @property
    def sessions(self) -> SessionRepository: ...

    def __enter__(self) -> SecurityUnitOfWork: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def commit(self) -> None: ...
