"""The registered API clients, the people's accounts and the client assertions accepted."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import (
    accepted_assertions,
    api_clients,
    user_accounts,
    user_sessions,
    utc_now,
)
from mpi.errors import DuplicateIdentifierError
from mpi.security import ApiClient, UserAccount, UserSession, parse_scopes, scopes_text

__all__ = ["SqlClientRepository", "SqlUserRepository", "SqlAssertionRepository",
           "SqlSessionRepository"]

_c, _u, _a, _s = api_clients.c, user_accounts.c, accepted_assertions.c, user_sessions.c


def _client(row: Any) -> ApiClient:
    return ApiClient(client_id=row.client_id, name=row.name, scopes=parse_scopes(row.scopes),
                     establishment=row.establishment, secret_hash=row.secret_hash,
                     jwks=dict(row.jwks) if row.jwks else None, jwks_url=row.jwks_url,
                     created_at=row.created_at, revoked_at=row.revoked_at)


def _client_values(client: ApiClient) -> dict[str, Any]:
    return {"client_id": client.client_id, "name": client.name,
            "scopes": scopes_text(client.scopes), "establishment": client.establishment,
            "secret_hash": client.secret_hash, "jwks": client.jwks,
            "jwks_url": client.jwks_url, "created_at": client.created_at or utc_now(),
            "revoked_at": client.revoked_at}


class SqlClientRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def get(self, client_id: str) -> ApiClient | None:
        row = self._sql.execute(select(api_clients).where(_c.client_id == client_id)).first()
        return None if row is None else _client(row)

    def named(self, name: str) -> ApiClient | None:
        row = self._sql.execute(select(api_clients).where(_c.name == name)).first()
        return None if row is None else _client(row)

    def add(self, client: ApiClient) -> None:
        if self.named(client.name) is not None or self.get(client.client_id) is not None:
            raise DuplicateIdentifierError(f"a client named {client.name} exists already")
        self._sql.execute(insert(api_clients).values(_client_values(client)))

    def save(self, client: ApiClient) -> None:
        self._sql.execute(update(api_clients).where(_c.client_id == client.client_id)
                          .values(_client_values(client)))

    def all(self) -> builtins.list[ApiClient]:
        return [_client(row) for row in self._sql.execute(select(api_clients).order_by(_c.name))]


def _user(row: Any) -> UserAccount:
    return UserAccount(name=row.name, password_hash=row.password_hash,
                       roles=frozenset(row.roles or ()), establishment=row.establishment,
                       created_at=row.created_at, disabled_at=row.disabled_at)


def _user_values(user: UserAccount) -> dict[str, Any]:
    return {"name": user.name, "password_hash": user.password_hash,
            "roles": sorted(user.roles), "establishment": user.establishment,
            "created_at": user.created_at or utc_now(), "disabled_at": user.disabled_at}


class SqlUserRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def get(self, name: str) -> UserAccount | None:
        row = self._sql.execute(select(user_accounts).where(_u.name == name)).first()
        return None if row is None else _user(row)

    def add(self, user: UserAccount) -> None:
        if self.get(user.name) is not None:
            raise DuplicateIdentifierError(f"a user named {user.name} exists already")
        self._sql.execute(insert(user_accounts).values(_user_values(user)))

    def save(self, user: UserAccount) -> None:
        self._sql.execute(update(user_accounts).where(_u.name == user.name)
                          .values(_user_values(user)))

    def all(self) -> builtins.list[UserAccount]:
        return [_user(row) for row in self._sql.execute(select(user_accounts).order_by(_u.name))]

    def count(self) -> int:
        return int(self._sql.execute(select(func.count()).select_from(user_accounts))
                   .scalar_one())


class SqlAssertionRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def remember(self, jti: str, client_id: str, expires_at: datetime) -> bool:
        statement = (self._sql.insert(accepted_assertions)
                     .values(jti=jti, client_id=client_id, expires_at=expires_at)
                     .on_conflict_do_nothing(index_elements=[_a.jti])
                     .returning(_a.jti))
        return self._sql.execute(statement).scalar_one_or_none() is not None

    def forget_expired(self, now: datetime) -> int:
        return int(self._sql.execute(delete(accepted_assertions)
                                     .where(_a.expires_at < now)).rowcount)


class SqlSessionRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def add(self, session: UserSession) -> None:
        self._sql.execute(insert(user_sessions).values(
            token_hash=session.token_hash, user_name=session.user_name, csrf=session.csrf,
            source=session.source, created_at=session.created_at,
            expires_at=session.expires_at, revoked_at=session.revoked_at,
            issuer=session.issuer,
            roles=sorted(session.roles) if session.roles is not None else None,
            establishment=session.establishment))

    def by_token_hash(self, token_hash: str) -> UserSession | None:
        row = self._sql.execute(select(user_sessions)
                                .where(_s.token_hash == token_hash)).first()
        if row is None:
            return None
        return UserSession(token_hash=row.token_hash, user_name=row.user_name, csrf=row.csrf,
                           created_at=row.created_at, expires_at=row.expires_at,
                           source=row.source, revoked_at=row.revoked_at, issuer=row.issuer,
                           roles=frozenset(row.roles) if row.roles is not None else None,
                           establishment=row.establishment)

    def revoke(self, token_hash: str, when: datetime) -> None:
        self._sql.execute(update(user_sessions).where(_s.token_hash == token_hash,
                                                      _s.revoked_at.is_(None))
                          .values(revoked_at=when))

    def revoke_user(self, user_name: str, when: datetime) -> int:
        return int(self._sql.execute(update(user_sessions)
                                     .where(_s.user_name == user_name, _s.revoked_at.is_(None))
                                     .values(revoked_at=when)).rowcount)
