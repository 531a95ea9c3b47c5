"""Keys derived from HOLDFAST_SECRET_KEY, and the keyed hashes secrets are stored as."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(secret: bytes, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose only, so one leaked derived key exposes nothing else."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode())
    return hkdf.derive(secret)


class Hasher:
    """HMAC-SHA256 under a key derived from the secret key. A database dump alone does
    not let anyone test guesses of a code or a device cookie offline."""

    def __init__(self, secret: bytes) -> None:
        self._key = derive_key(secret, "holdfast stored secrets")

    def hash(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def matches(self, expected: str, *parts: str) -> bool:
        return hmac.compare_digest(expected, self.hash(*parts))
