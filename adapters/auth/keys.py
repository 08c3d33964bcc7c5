"""The service's signing keys: ES256 (P-256), generated into the data folder on first start,
published as a JWK set at /oauth/jwks.json. The newest key signs; the older ones stay
published (and valid for verification) until they are retired, so that a rotation never cuts
off the tokens already issued. A process notices keys added or retired by another (`mpi keys
rotate`, a second server sharing the folder) by the folder's modification time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

__all__ = ["SigningKeys"]

ALGORITHM = "ES256"


class SigningKeys:
    """The key files of one folder (``signing-<time>.pem``, private, mode 0600)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._keys: list[ECKey] = []
        self._seen: int | None = None
        self.reload()

    def reload(self) -> None:
        """Read the key files; generate the first one when there is none. Raises OSError
        when the folder cannot be created or read."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = sorted(self.folder.glob("signing-*.pem"))
        if not files:
            self.rotate()
            return
        self._keys = [ECKey.import_key(path.read_bytes()) for path in files]
        self._seen = self.folder.stat().st_mtime_ns

    def _fresh(self) -> None:
        try:
            changed = self.folder.stat().st_mtime_ns != self._seen
        except OSError:
            return  # keep the keys known; the folder may come back
        if changed:
            self.reload()

    def rotate(self) -> str:
        """Add a new key that signs from now on; returns its kid."""
        key = ECKey.generate_key("P-256", private=True)
        numbers = [int(p.stem.removeprefix("signing-")) for p in self.folder.glob("signing-*.pem")
                   if p.stem.removeprefix("signing-").isdigit()]
        number = max(numbers, default=0) + 1
        path = self.folder / f"signing-{number:04d}.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key.as_pem(private=True))
        self._keys = [*self._keys, key]
        self._seen = self.folder.stat().st_mtime_ns
        return key.thumbprint()

    def retire(self, keep: int = 2) -> int:
        """Delete all but the ``keep`` newest keys (tokens they signed stop verifying)."""
        files = sorted(self.folder.glob("signing-*.pem"))
        doomed = files[:-keep] if keep > 0 else files
        for path in doomed:
            path.unlink()
        self.reload()
        return len(doomed)

    @property
    def signing(self) -> ECKey:
        self._fresh()
        return self._keys[-1]

    def kid(self, key: ECKey) -> str:
        return key.thumbprint()

    def by_kid(self, kid: str) -> ECKey | None:
        self._fresh()
        return next((key for key in self._keys if key.thumbprint() == kid), None)

    def jwks(self) -> dict[str, Any]:
        """The public keys, each with its kid, use and algorithm."""
        self._fresh()
        keys = []
        for key in self._keys:
            public = key.as_dict(private=False)
            public.update(kid=key.thumbprint(), use="sig", alg=ALGORITHM)
            keys.append(public)
        return {"keys": keys}

    def key_set(self) -> KeySet:
        self._fresh()  # a key retired by `mpi keys rotate --retire` stops verifying at once
        return KeySet(list(self._keys))
