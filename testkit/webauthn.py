"""A software WebAuthn authenticator (ES256, "none" attestation) for the passkey tests that
Chromium's virtual authenticator cannot drive: forged signatures, counters, flags."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from app.core.passkey_challenges import RelyingParty
from testkit.api import bearer

#: authenticator data flags (WebAuthn §6.1): user present, verified, backup eligible and
#: backed up, attested credential data
UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40

RP = RelyingParty.from_base_url("http://localhost", "Holdfast")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    """One discoverable credential on a software authenticator. ``count_by`` 0 behaves
    like a synced passkey (no counter); ``synced`` sets the backup flags."""

    def __init__(self, *, count_by: int = 1, synced: bool = False, origin: str = RP.origin):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.count = 0
        self.count_by = count_by
        self.synced = synced
        self.origin = origin
        self.rp_id = RP.id
        self.user_handle: bytes | None = None

    def _flags(self, *, verified: bool = True) -> int:
        flags = UP | (UV if verified else 0)
        return flags | (BE | BS if self.synced else 0)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        ).encode()

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        """The answer to creation options (WebAuthn JSON form), as toJSON() gives it."""
        self.user_handle = unb64(options["user"]["id"])
        numbers = self.key.public_key().public_numbers()
        cose = {
            1: 2,
            3: -7,
            -1: 1,
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
        attested = (
            bytes(16)
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + cbor2.dumps(cose)
        )
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([self._flags() | AT])
            + self.count.to_bytes(4, "big")
            + attested
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"])
        return {
            "id": b64(self.credential_id),
            "rawId": b64(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(client_data),
                "attestationObject": b64(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(self, options: dict[str, Any], *, verified: bool = True) -> dict[str, Any]:
        """The answer to request options, signed; the counter moves on by ``count_by``."""
        self.count += self.count_by
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([self._flags(verified=verified)])
            + self.count.to_bytes(4, "big")
        )
        client_data = self._client_data("webauthn.get", options["challenge"])
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64(self.credential_id),
            "rawId": b64(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(client_data),
                "authenticatorData": b64(auth_data),
                "signature": b64(signature),
                "userHandle": b64(self.user_handle or b""),
            },
            "clientExtensionResults": {},
        }


def register(client, token: str, device: SoftAuthenticator, **body: Any) -> Any:
    """Add ``device``'s passkey through the API; the answer."""
    options = client.post("/api/account/passkeys/options", headers=bearer(token))
    assert options.status_code == 200, options.text
    credential = device.create(options.json["publicKey"])
    return client.post(
        "/api/account/passkeys",
        json={"challengeId": options.json["challengeId"], "credential": credential, **body},
        headers=bearer(token),
    )


def passkey_sign_in(client, device: SoftAuthenticator, **body: Any) -> Any:
    """Sign in with ``device``'s passkey through the API; the answer."""
    options = client.post("/api/auth/passkey/options", json={})
    assert options.status_code == 200, options.text
    return client.post(
        "/api/auth/passkey/verify",
        json={
            "challengeId": options.json["challengeId"],
            "credential": device.get(options.json["publicKey"]),
            **body,
        },
    )
