"""Sealing stored secrets: AES-256-GCM under keys derived from HOLDFAST_SECRET_KEY.

Every secret Holdfast must read back (the token signing keys' private halves, the
authenticator apps' TOTP secrets, the webhook signing secrets, the audit chains'
pseudonym keys) is stored *sealed* by one :class:`Sealer`:

* **One key per purpose.** The AES key for a purpose is HKDF-SHA256 of the secret key
  with the purpose in ``info`` (:class:`Purpose`), so a key leaked from one purpose opens
  nothing else.
* **The sealing key's id travels with the blob.** A sealed blob is
  ``MAGIC | key id (8 bytes) | nonce (12) | ciphertext and tag``. The key id is itself
  derived from the secret key (HKDF with its own ``info``, one way): it names which
  secret key sealed a blob without revealing anything about it. The caller's context
  (the row's id, e.g. a key's ``kid`` or a person's id) and the header are the AEAD's
  associated data, so a blob copied into another row, or given another header, does
  not open.
* **Fallback keys.** A Sealer is made from the current secret key and the old ones
  still accepted (``HOLDFAST_SECRET_KEY_FALLBACKS``). It always seals under the current
  key and opens a blob under whichever key its id names. :meth:`Sealer.opened` says
  whether a blob is sealed under the current key, so ``holdfast secrets rotate`` can
  re-seal the rest.
* **Blobs from before key ids.** Until key ids existed each purpose sealed
  ``nonce | ciphertext`` under a key of its own derivation (:attr:`Purpose.legacy`).
  Such blobs still open, under the current key or any fallback; they are reported as
  not current, so ``holdfast secrets rotate`` re-seals them in today's form. (A legacy
  blob's random nonce starts with MAGIC once in 16 million: it then fails the first
  reading and is tried as a legacy blob all the same.)

A blob that opens under none of the keys raises :class:`Unsealable`, whose message names
the key that sealed it and what to do; the web answers it with a 503
(app.web.errors) and ``/readyz`` and ``holdfast serve`` report it (app.preflight).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: the first bytes of every blob sealed with a key id (format 1)
MAGIC = b"hf\x01"
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES

#: what to do when a stored secret opens under none of the keys; said wherever it is seen
FIX = (
    "Set HOLDFAST_SECRET_KEY back to the key the database was set up with, or add that "
    "key to HOLDFAST_SECRET_KEY_FALLBACKS (then run `holdfast secrets rotate` to re-seal "
    "everything under the new key)."
)


def derive_key(secret: bytes, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose only (HKDF-SHA256, ``purpose`` as its info), so one leaked
    derived key exposes nothing else."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode())
    return hkdf.derive(secret)


class Unsealable(Exception):
    """A stored secret opens under neither the secret key nor any fallback."""

    def __init__(self, purpose: Purpose, sealed_with: str | None, message: str | None = None):
        self.purpose = purpose
        #: the id of the key that sealed it, or None for a blob from before key ids
        self.sealed_with = sealed_with
        which = (
            f"secret key {sealed_with}"
            if sealed_with
            else "a secret key (sealed before key ids were recorded)"
        )
        super().__init__(
            message
            or (
                f"A stored {purpose.label} was sealed with {which} that is neither "
                f"HOLDFAST_SECRET_KEY nor one of HOLDFAST_SECRET_KEY_FALLBACKS. {FIX}"
            )
        )


def _legacy_direct(info: str) -> Callable[[bytes], bytes]:
    """The key that code before key ids derived straight from the secret (signing keys)."""
    return lambda secret: derive_key(secret, info)


def _legacy_hashed(info: str) -> Callable[[bytes], bytes]:
    """The key that code before key ids took from the Hasher: HMAC-SHA256, under the
    Hasher's derived key, of a purpose string (TOTP and webhook secrets)."""

    def key(secret: bytes) -> bytes:
        hasher_key = derive_key(secret, "holdfast stored secrets")
        return hmac.new(hasher_key, info.encode(), hashlib.sha256).digest()

    return key


@dataclass(frozen=True)
class Purpose:
    """What a blob holds: its own derived key, and how blobs from before key ids were
    keyed (None: nothing was sealed for it before)."""

    #: HKDF info of this purpose's key, and how messages name it
    label: str
    legacy: Callable[[bytes], bytes] | None = None


SIGNING_KEY = Purpose("token signing key", _legacy_direct("holdfast signing keys"))
TOTP_SECRET = Purpose("authenticator app secret", _legacy_hashed("holdfast totp secrets"))
WEBHOOK_SECRET = Purpose("webhook signing secret", _legacy_hashed("holdfast webhook secrets"))
PSEUDONYM_KEY = Purpose("audit pseudonym key")
#: a queued mail's body (app.outbox): it can hold a sign-in code or a link's secret
MAIL_BODY = Purpose("queued mail body")


def key_id(secret: bytes) -> str:
    """The public id of a secret key (16 hex digits): which key sealed a blob, never the key."""
    return derive_key(secret, "holdfast key id", KEY_ID_BYTES).hex()


@dataclass(frozen=True)
class Opened:
    plaintext: bytes
    #: the id of the key it opened under
    key_id: str
    #: sealed in today's form under the current key: nothing for a rotation to do
    current: bool


class _Key:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.id_bytes = derive_key(secret, "holdfast key id", KEY_ID_BYTES)
        self.id = self.id_bytes.hex()
        self._ciphers: dict[tuple[str, bool], AESGCM] = {}

    def cipher(self, purpose: Purpose, *, legacy: bool = False) -> AESGCM:
        found = self._ciphers.get((purpose.label, legacy))
        if found is None:
            if legacy:
                assert purpose.legacy is not None
                raw = purpose.legacy(self.secret)
            else:
                raw = derive_key(self.secret, f"holdfast sealed {purpose.label}")
            found = self._ciphers[(purpose.label, legacy)] = AESGCM(raw)
        return found


class Sealer:
    """Seals under the current secret key; opens under it or any fallback (see the
    module docstring)."""

    def __init__(self, secret: bytes, fallbacks: Sequence[bytes] = ()) -> None:
        keys = [_Key(secret)]
        for old in fallbacks:
            if all(old != key.secret for key in keys):
                keys.append(_Key(old))
        self._keys = keys
        self._by_id = {key.id_bytes: key for key in keys}

    @property
    def key_id(self) -> str:
        """The current key's id."""
        return self._keys[0].id

    @property
    def key_ids(self) -> list[str]:
        """The current key's id, then the fallbacks'."""
        return [key.id for key in self._keys]

    def seal(self, purpose: Purpose, plaintext: bytes, context: str) -> bytes:
        """``plaintext`` sealed under the current key, bound to ``context`` (the row it
        is stored in)."""
        key = self._keys[0]
        header = MAGIC + key.id_bytes
        nonce = os.urandom(NONCE_BYTES)
        sealed = key.cipher(purpose).encrypt(nonce, plaintext, header + context.encode())
        return header + nonce + sealed

    def open(self, purpose: Purpose, blob: bytes, context: str) -> bytes:
        """The plaintext of ``blob``. Raises Unsealable."""
        return self.opened(purpose, blob, context).plaintext

    def opened(self, purpose: Purpose, blob: bytes, context: str) -> Opened:
        """``blob`` opened, with the key it opened under. Raises Unsealable."""
        blob = bytes(blob)
        named = None
        if blob.startswith(MAGIC) and len(blob) >= HEADER_BYTES + NONCE_BYTES + TAG_BYTES:
            header, rest = blob[:HEADER_BYTES], blob[HEADER_BYTES:]
            named = header[len(MAGIC) :]
            key = self._by_id.get(named)
            if key is not None:
                try:
                    plaintext = key.cipher(purpose).decrypt(
                        rest[:NONCE_BYTES], rest[NONCE_BYTES:], header + context.encode()
                    )
                except InvalidTag:
                    pass
                else:
                    return Opened(plaintext, key.id, current=key is self._keys[0])
        if purpose.legacy is not None and len(blob) >= NONCE_BYTES + TAG_BYTES:
            for key in self._keys:
                try:
                    plaintext = key.cipher(purpose, legacy=True).decrypt(
                        blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode()
                    )
                except InvalidTag:
                    continue
                return Opened(plaintext, key.id, current=False)
        raise Unsealable(purpose, named.hex() if named is not None else None)
