"""Secrets and passwords are kept only as argon2id hashes (argon2-cffi)."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["hash_secret", "verify_secret", "new_secret"]

_HASHER = PasswordHasher()
# Verified against when no account exists, so that a wrong name costs as long as a wrong
# password (no user enumeration by timing).
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))


def new_secret() -> str:
    """A random client secret or first password: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """Whether ``secret`` matches the hash (constant time; a missing hash costs the same)."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY, secret) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
