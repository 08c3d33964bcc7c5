"""Authentication as the adapters use it: bearer tokens (the service's own, or an identity
provider's) and console sessions turned into principals, tokens issued to clients, failures
slowed down, and the administration of clients and accounts."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import Enum
from typing import Any

from adapters.auth.oidc import OidcProvider
from adapters.auth.passwords import hash_secret, new_secret, verify_secret
from adapters.auth.tokens import IssuedToken, TokenRefused, TokenService, unverified_claims
from adapters.errors import AdapterError
from mpi.authorities import AuthorityRegistry
from mpi.errors import InvalidValueError, UnknownIdentifierError
from mpi.model import AuthorityKind
from mpi.ports import Clock
from mpi.security import (
    ROLES,
    ApiClient,
    Principal,
    Role,
    SecurityUnitOfWork,
    UserAccount,
    UserSession,
    parse_scopes,
)

__all__ = ["AuthService", "CLIENT_CHECK_SECONDS", "FailureLimiter", "LoginRefused", "ScopeRefused", "NewClient",
           "SESSION_COOKIE", "FIRST_ADMIN", "UNCHANGED", "Unchanged"]

SESSION_COOKIE = "mpi_session"
FIRST_ADMIN = "admin"


class Unchanged(Enum):
    """What an account keeps as it was (see AuthService.set_roles)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


class LoginRefused(AdapterError):
    """A person's login failed: wrong name or password, disabled account (the message never
    says which, to whom it is shown)."""


class ScopeRefused(AdapterError):
    """A client asked for scopes beyond those it is registered with (``invalid_scope``)."""


@dataclass(frozen=True)
class NewClient:
    client: ApiClient
    secret: str | None  # shown once, never stored


class FailureLimiter:
    """Repeated failures for one key (a client id, a user name) are slowed down: after
    ``limit`` failures within ``window`` seconds, the key is refused until the oldest of them
    leaves the window. Per process (each server of a cluster counts its own)."""

    def __init__(self, limit: int = 5, window: float = 300.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._now = now
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, key: str) -> deque[float]:
        failures = self._failures[key]
        while failures and self._now() - failures[0] > self.window:
            failures.popleft()
        return failures

    def retry_after(self, key: str) -> float:
        """Seconds before ``key`` may try again (0: now)."""
        with self._lock:
            failures = self._trim(key)
            if len(failures) < self.limit:
                return 0.0
            return max(1.0, self.window - (self._now() - failures[0]))

    def failed(self, key: str) -> None:
        with self._lock:
            self._trim(key).append(self._now())

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# Seconds a client found not revoked is believed so without asking the database again: a
# revocation made by another process (`mpi client revoke`, another HTTP worker or server)
# stops the client's tokens within this delay; one made by this process, at once.
CLIENT_CHECK_SECONDS = 5.0


class AuthService:
    """Turns credentials into principals, and administers clients and accounts."""

    def __init__(self, uow_factory: Callable[..., SecurityUnitOfWork], tokens: TokenService,
                 registry: AuthorityRegistry, clock: Clock, oidc: OidcProvider | None = None,
                 session_lifetime: float = 8 * 3600,
                 client_check_seconds: float = CLIENT_CHECK_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.uow_factory = uow_factory
        self.client_check_seconds = client_check_seconds
        self._monotonic = monotonic
        self._clients_checked: dict[str, float] = {}  # client id → when found not revoked
        self.tokens = tokens
        self.registry = registry
        self.clock = clock
        self.oidc = oidc
        self.session_lifetime = session_lifetime
        self.token_failures = FailureLimiter()
        self.login_failures = FailureLimiter()

    # -- bearer tokens ---------------------------------------------------------------------

    def authenticate_bearer(self, token: str, source: str | None) -> Principal:
        """The principal a bearer token proves. Raises TokenRefused: not a JWT, an issuer
        this service does not trust, a token that does not verify, a revoked client."""
        issuer = str(unverified_claims(token).get("iss", ""))
        if issuer == self.tokens.issuer:
            principal = self.tokens.verify(token)
            if principal.kind == "client":
                self._check_client(principal.name)
        elif self.oidc is not None and issuer.rstrip("/") == self.oidc.issuer:
            principal = self.oidc.verify(token)
        else:
            raise TokenRefused("the token comes from an issuer this service does not trust")
        return _with_source(principal, source)

    def _check_client(self, client_id: str) -> None:
        """Raises TokenRefused when the client is unknown or revoked; a client found active
        is not looked up again for client_check_seconds (see CLIENT_CHECK_SECONDS)."""
        now = self._monotonic()
        checked = self._clients_checked.get(client_id)
        if checked is not None and now - checked < self.client_check_seconds:
            return
        with self.uow_factory(read_only=True) as uow:
            client = uow.clients.get(client_id)
        if client is None or client.is_revoked:
            self._clients_checked.pop(client_id, None)
            raise TokenRefused("the token's client is revoked")
        if len(self._clients_checked) >= 10_000:  # bounded: forget them all, ask again
            self._clients_checked.clear()
        self._clients_checked[client_id] = now

    def issue_for_client(self, client: ApiClient, requested: str | None) -> IssuedToken:
        """A token for a client, with the scopes asked for (default: all of its own).
        Raises ScopeRefused for a scope beyond them or not in SMART v2 syntax."""
        try:
            wanted = parse_scopes(requested) if requested else client.scopes
        except InvalidValueError as exc:
            raise ScopeRefused(exc.message) from None
        beyond = [s for s in wanted if not s.within(client.scopes)]
        if beyond:
            raise ScopeRefused(f"scope {beyond[0]} is beyond this client's "
                               f"({' '.join(str(s) for s in client.scopes)})")
        return self.tokens.issue(Principal(kind="client", name=client.client_id,
                                           establishment=client.establishment,
                                           scopes=tuple(wanted)))

    # -- console sessions ------------------------------------------------------------------

    def login(self, name: str, password: str, source: str | None) -> tuple[str, UserSession]:
        """A new session for a person (the cookie's token, and the session). Raises
        LoginRefused (unknown name, wrong password or disabled account: the same answer)."""
        with self.uow_factory(read_only=True) as uow:
            account = uow.users.get(name)
        if not verify_secret(account.password_hash if account else None, password) or (
                account is None or account.is_disabled):
            raise LoginRefused("unknown user, wrong password or disabled account")
        return self.open_session(account.name, source)

    def open_session(self, name: str, source: str | None,
                     vouched: Principal | None = None) -> tuple[str, UserSession]:
        """A new session: for a local account (``name``), or for a person an identity
        provider vouched for (``vouched``, with its roles and establishment)."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        session = UserSession(
            _token_hash(token), vouched.name if vouched else name, secrets.token_urlsafe(24),
            now, now + timedelta(seconds=self.session_lifetime), source,
            issuer=vouched.issuer if vouched else None,
            roles=frozenset(vouched.roles) if vouched else None,
            establishment=vouched.establishment if vouched else None)
        with self.uow_factory() as uow:
            uow.sessions.add(session)
            uow.commit()
        return token, session

    def session_principal(self, token: str, source: str | None
                          ) -> tuple[Principal, UserSession] | None:
        """The person of a session cookie, None when it is unknown, expired, revoked, or its
        account is disabled."""
        with self.uow_factory(read_only=True) as uow:
            session = uow.sessions.by_token_hash(_token_hash(token))
            account = (uow.users.get(session.user_name)
                       if session is not None and session.issuer is None else None)
        now = self.clock.now()
        if session is None or session.revoked_at is not None or session.expires_at <= now:
            return None
        if session.issuer is not None:  # a person of the identity provider
            principal = Principal(kind="user", name=session.user_name, source=source,
                                  establishment=session.establishment,
                                  roles=session.roles or frozenset(),
                                  token_id=session.token_hash[:16], issuer=session.issuer)
        elif account is None or account.is_disabled:
            return None
        else:
            principal = Principal(kind="user", name=account.name,
                                  establishment=account.establishment, roles=account.roles,
                                  token_id=session.token_hash[:16], source=source)
        return principal, session

    def logout(self, token: str) -> None:
        with self.uow_factory() as uow:
            uow.sessions.revoke(_token_hash(token), self.clock.now())
            uow.commit()

    # -- administration --------------------------------------------------------------------

    def _establishment(self, code: str | None) -> str | None:
        if code is None:
            return None
        authority = self.registry.named(code)
        if authority.kind is not AuthorityKind.ESTABLISHMENT:
            raise InvalidValueError(f"{authority.code} is not an establishment")
        return authority.code

    def add_client(self, name: str, scopes: str, establishment: str | None = None,
                   jwks: dict[str, Any] | None = None,
                   jwks_url: str | None = None) -> NewClient:
        """Register a system. Without a key set it gets a secret (returned once, stored only
        as a slow hash). Raises InvalidValueError (bad scope, not an establishment),
        DuplicateIdentifierError (the name exists), UnknownAuthorityError."""
        granted = parse_scopes(scopes)
        if not granted:
            raise InvalidValueError("a client needs at least one scope")
        if jwks is not None and not isinstance(jwks.get("keys"), list):
            raise InvalidValueError("the key set is not a JWK set ({\"keys\": [...]})")
        secret = None if (jwks or jwks_url) else new_secret()
        client = ApiClient(
            client_id=f"{_slug(name)}-{secrets.token_hex(4)}", name=name, scopes=granted,
            establishment=self._establishment(establishment),
            secret_hash=hash_secret(secret) if secret else None, jwks=jwks, jwks_url=jwks_url,
            created_at=self.clock.now())
        with self.uow_factory() as uow:
            uow.clients.add(client)
            uow.commit()
        return NewClient(client, secret)

    def revoke_client(self, name: str) -> ApiClient:
        """Its tokens stop working: at once in this process, within client_check_seconds in
        the others (see CLIENT_CHECK_SECONDS). Raises UnknownIdentifierError."""
        with self.uow_factory() as uow:
            client = uow.clients.named(name) or uow.clients.get(name)
            if client is None:
                raise UnknownIdentifierError(f"no client named {name}")
            client.revoked_at = client.revoked_at or self.clock.now()
            uow.clients.save(client)
            uow.commit()
        self._clients_checked.pop(client.client_id, None)
        return client

    def clients(self) -> list[ApiClient]:
        with self.uow_factory(read_only=True) as uow:
            return uow.clients.all()

    def add_user(self, name: str, password: str, roles: tuple[str, ...],
                 establishment: str | None = None) -> UserAccount:
        """Raises InvalidValueError (unknown role, short password, not an establishment),
        DuplicateIdentifierError."""
        _check_roles(roles)
        _check_password(password)
        account = UserAccount(name=name, password_hash=hash_secret(password),
                              roles=frozenset(roles),
                              establishment=self._establishment(establishment),
                              created_at=self.clock.now())
        with self.uow_factory() as uow:
            uow.users.add(account)
            uow.commit()
        return account

    def set_password(self, name: str, password: str) -> None:
        """Raises UnknownIdentifierError, InvalidValueError. Ends the person's sessions."""
        _check_password(password)
        with self.uow_factory() as uow:
            account = uow.users.get(name)
            if account is None:
                raise UnknownIdentifierError(f"no user named {name}")
            account.password_hash = hash_secret(password)
            uow.users.save(account)
            uow.sessions.revoke_user(name, self.clock.now())
            uow.commit()

    def set_roles(self, name: str, roles: tuple[str, ...],
                  establishment: str | None | Unchanged = UNCHANGED) -> UserAccount:
        """Give an account these roles in place of its own, and an establishment (None: none,
        regional staff; UNCHANGED, the default: the one it has). Ends the person's open
        sessions at once, as a new password does: a session was opened under what the
        account was granted then, and the person logs in again under the new grant. Raises
        UnknownIdentifierError, InvalidValueError (unknown role, not an establishment, the
        last enabled account holding admin losing it)."""
        _check_roles(roles)
        code = (establishment if isinstance(establishment, Unchanged)
                else self._establishment(establishment))
        with self.uow_factory() as uow:
            account = uow.users.get(name)
            if account is None:
                raise UnknownIdentifierError(f"no user named {name}")
            if Role.ADMIN not in roles:
                _keep_an_admin(uow, account, "lose the role admin")
            account.roles = frozenset(roles)
            if not isinstance(code, Unchanged):
                account.establishment = code
            uow.users.save(account)
            uow.sessions.revoke_user(name, self.clock.now())
            uow.commit()
        return account

    def enable_user(self, name: str) -> UserAccount:
        """A disabled account may log in again (with its password, roles and establishment
        as they were); its sessions ended when it was disabled stay ended. Raises
        UnknownIdentifierError."""
        with self.uow_factory() as uow:
            account = uow.users.get(name)
            if account is None:
                raise UnknownIdentifierError(f"no user named {name}")
            account.disabled_at = None
            uow.users.save(account)
            uow.commit()
        return account

    def disable_user(self, name: str) -> None:
        """Raises UnknownIdentifierError, InvalidValueError (the last enabled account holding
        admin). Ends the person's sessions at once."""
        with self.uow_factory() as uow:
            account = uow.users.get(name)
            if account is None:
                raise UnknownIdentifierError(f"no user named {name}")
            _keep_an_admin(uow, account, "be disabled")
            account.disabled_at = account.disabled_at or self.clock.now()
            uow.users.save(account)
            uow.sessions.revoke_user(name, self.clock.now())
            uow.commit()

    def users(self) -> list[UserAccount]:
        with self.uow_factory(read_only=True) as uow:
            return uow.users.all()

    def ensure_first_admin(self) -> str | None:
        """On an index without any account, create ``admin`` (role admin) with a random
        password, returned once to be shown on the console; None when accounts exist."""
        with self.uow_factory(read_only=True) as uow:
            if uow.users.count():
                return None
        password = new_secret()
        self.add_user(FIRST_ADMIN, password, ("admin",))
        return password

    def forget_expired_assertions(self) -> int:
        with self.uow_factory() as uow:
            forgotten = uow.assertions.forget_expired(self.clock.now())
            uow.commit()
        return forgotten


def _check_roles(roles: tuple[str, ...]) -> None:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InvalidValueError(f"unknown role(s) {', '.join(unknown)}; the roles are "
                                f"{', '.join(ROLES)}")


def _keep_an_admin(uow: SecurityUnitOfWork, account: UserAccount, change: str) -> None:
    """Raises InvalidValueError when ``account`` is the last enabled account holding admin:
    without it nobody could administer the service (its accounts, its clients)."""
    if Role.ADMIN not in account.roles or account.is_disabled:
        return
    if any(other.name != account.name and Role.ADMIN in other.roles and not other.is_disabled
           for other in uow.users.all()):
        return
    raise InvalidValueError(f"{account.name} is the last enabled account holding admin and "
                            f"cannot {change}: give admin to another account first, or "
                            f"nobody could administer the service")


def _check_password(password: str) -> None:
    if len(password) < 12:
        raise InvalidValueError("a password has at least 12 characters")


def _slug(name: str) -> str:
    kept = "".join(c.lower() if c.isalnum() else "-" for c in name).strip("-")
    return kept[:40] or "client"


def _with_source(principal: Principal, source: str | None) -> Principal:
    return replace(principal, source=source)
