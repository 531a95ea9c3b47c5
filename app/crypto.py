"""Keys derived from HOLDFAST_SECRET_KEY, and the keyed hashes secrets are stored as."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from app.sealing import Sealer, derive_key

__all__ = ["Hasher", "derive_key"]


class Hasher:
    """HMAC-SHA256 under a key derived from the secret key. A database dump alone does
    not let anyone test guesses of a code or a device cookie offline.

    New hashes are made under the current secret key; with fallback keys
    (HOLDFAST_SECRET_KEY_FALLBACKS), :meth:`matches` also accepts a hash made under one
    of them, and :meth:`candidates` gives every key's hash for a lookup by hash (the
    caller stores the current one once it finds the row). The :class:`~app.sealing.Sealer`
    made from the same keys rides along as :attr:`sealer`, so code handed the Hasher can
    seal and open stored secrets too."""

    def __init__(self, secret: bytes, fallbacks: Sequence[bytes] = ()) -> None:
        self._keys = [derive_key(secret, "holdfast stored secrets")]
        for old in fallbacks:
            key = derive_key(old, "holdfast stored secrets")
            if key not in self._keys:
                self._keys.append(key)
        self.sealer: Sealer = Sealer(secret, fallbacks)

    def hash(self, *parts: str) -> str:
        """The hash under the current key."""
        return self._hash(self._keys[0], parts)

    def candidates(self, *parts: str) -> list[str]:
        """The hash under the current key, then under each fallback key."""
        return [self._hash(key, parts) for key in self._keys]

    def matches(self, expected: str, *parts: str) -> bool:
        """Whether ``expected`` is the hash of ``parts`` under the current key or a fallback."""
        found = False
        for key in self._keys:  # no early exit: the time taken says nothing about which
            found |= hmac.compare_digest(expected, self._hash(key, parts))
        return found

    @staticmethod
    def _hash(key: bytes, parts: Sequence[str]) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()
