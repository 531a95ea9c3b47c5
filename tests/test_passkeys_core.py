"""Passkey rules in the core (app.core.passkeys), with a software authenticator: a P-256
key pair that answers WebAuthn ceremonies as an authenticator would (attestation
``none``). The browser tests (test_browser_passkeys.py) run the same ceremonies in
Chromium; these cover what a browser cannot be made to send: expired challenges, other
origins and relying parties, missing user verification, changed backup flags, counters."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import timedelta
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from app.core import events, passkeys
from app.core.errors import Forbidden
from app.models import Alert, Event, Passkey, PasskeyChallenge
from tests.test_api import assert_error, bearer, token_for

RP = passkeys.RelyingParty.from_base_url("http://localhost", "Holdfast")

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


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


def sign_in_options(db, clock, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    challenge, options = passkeys.sign_in_options(db, RP, now=clock.now(), **kwargs)
    db.commit()
    return challenge.id, options


def verify(db, clock, challenge_id: str, credential: dict[str, Any], rp=RP) -> passkeys.Verified:
    return passkeys.verify(
        db, rp, challenge_id, credential, purpose="sign_in", now=clock.now(), origin=events.SYSTEM
    )


@pytest.fixture
def sam_device(client, mailbox, member) -> SoftAuthenticator:
    device = SoftAuthenticator()
    answer = register(client, token_for(client, mailbox, member.email), device)
    assert answer.status_code == 201, answer.text
    return device


def test_the_relying_party_is_the_base_urls_host():
    rp = passkeys.RelyingParty.from_base_url("https://id.Acme.test:8443/holdfast", "Acme")
    assert (rp.id, rp.origin, rp.name) == ("id.acme.test", "https://id.acme.test:8443", "Acme")
    with pytest.raises(ValueError, match="no host"):
        passkeys.RelyingParty.from_base_url("not a url", "x")


def test_options_are_single_use_challenges_for_this_relying_party(db, clock):
    challenge_id, options = sign_in_options(db, clock)
    assert options["rpId"] == "localhost" and options["allowCredentials"] == []
    assert options["userVerification"] == "preferred"
    row = db.get_one(PasskeyChallenge, challenge_id)
    assert unb64(options["challenge"]) == row.challenge and len(row.challenge) == 32
    assert row.expires_at - row.created_at == timedelta(minutes=5)


def test_a_passkey_signs_in_once_per_challenge(db, clock, sam_device, member):
    challenge_id, options = sign_in_options(db, clock)
    answer = sam_device.get(options)
    verified = verify(db, clock, challenge_id, answer)
    assert verified.user.id == member.id
    db.commit()
    stored = db.scalars(select(Passkey).where(Passkey.user_id == member.id)).one()
    assert stored.sign_count == 1 and stored.last_used_at == clock.now()
    with pytest.raises(passkeys.PasskeyRefused, match="used already"):
        verify(db, clock, challenge_id, answer)


def test_an_expired_challenge_is_refused(db, clock, sam_device):
    challenge_id, options = sign_in_options(db, clock)
    clock.advance(minutes=5, seconds=1)
    with pytest.raises(passkeys.PasskeyRefused, match="ended"):
        verify(db, clock, challenge_id, sam_device.get(options))


def test_another_origin_or_relying_party_is_refused(db, clock, sam_device):
    challenge_id, options = sign_in_options(db, clock)
    sam_device.origin = "http://localhost.evil.test"
    with pytest.raises(passkeys.PasskeyRefused):
        verify(db, clock, challenge_id, sam_device.get(options))
    sam_device.origin = RP.origin
    # A challenge made for this relying party cannot be answered to another one.
    challenge_id, options = sign_in_options(db, clock)
    other = passkeys.RelyingParty.from_base_url("http://other.test", "Other")
    with pytest.raises(passkeys.PasskeyRefused, match="ended"):
        verify(db, clock, challenge_id, sam_device.get(options), rp=other)


def test_an_answer_without_user_verification_is_refused(db, clock, sam_device):
    challenge_id, options = sign_in_options(db, clock)
    with pytest.raises(passkeys.PasskeyRefused):
        verify(db, clock, challenge_id, sam_device.get(options, verified=False))


def test_a_forged_signature_is_refused_and_raises_no_alert(db, clock, sam_device):
    challenge_id, options = sign_in_options(db, clock)
    answer = sam_device.get(options)
    answer["response"]["signature"] = b64(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    sam_device.count = 0  # a forger who also sends a low counter
    with pytest.raises(passkeys.PasskeyRefused):
        verify(db, clock, challenge_id, answer)
    assert db.scalars(select(Alert).execution_options(all_tenants=True)).all() == []


def test_a_counter_going_back_is_a_clone(db, clock, sam_device, member):
    challenge_id, options = sign_in_options(db, clock)
    verify(db, clock, challenge_id, sam_device.get(options))
    db.commit()
    sam_device.count = 0  # the copy still counts from where the key was copied
    challenge_id, options = sign_in_options(db, clock)
    with pytest.raises(passkeys.PasskeyRefused, match="looks copied"):
        verify(db, clock, challenge_id, sam_device.get(options))
    db.commit()
    alert = db.scalars(select(Alert).execution_options(all_tenants=True)).one()
    assert (alert.kind, alert.severity, alert.user_id) == ("passkey_cloned", "high", member.id)
    event = db.scalars(select(Event).where(Event.kind == "passkey.cloned")).one()
    assert event.details["stored_count"] == 1 and event.details["sent_count"] == 1


def test_a_synced_passkey_without_a_counter_signs_in_again_and_again(
    client, mailbox, member, db, clock
):
    device = SoftAuthenticator(count_by=0, synced=True)
    assert register(client, token_for(client, mailbox, member.email), device).status_code == 201
    for _ in range(3):
        challenge_id, options = sign_in_options(db, clock)
        verify(db, clock, challenge_id, device.get(options))
        db.commit()
    stored = db.scalars(select(Passkey)).one()
    assert stored.backup_eligible and stored.backed_up and stored.sign_count == 0


def test_backup_eligibility_cannot_change(db, clock, sam_device):
    sam_device.synced = True  # registered single-device; now claims to be syncable
    challenge_id, options = sign_in_options(db, clock)
    with pytest.raises(passkeys.PasskeyRefused, match="does not match"):
        verify(db, clock, challenge_id, sam_device.get(options))


def test_a_sign_in_limited_to_a_tenant_refuses_other_tenants_passkeys(db, clock, sam_device, make):
    globex = make.tenant("globex")
    challenge_id, options = sign_in_options(db, clock, tenant_id=globex.id)
    with pytest.raises(passkeys.PasskeyRefused, match="another organisation"):
        verify(db, clock, challenge_id, sam_device.get(options))


def test_a_tenant_that_disallows_passkeys_refuses_them(
    db, clock, sam_device, make, tenant, client, mailbox, member
):
    make.policy(tenant, allow_passkeys=False)
    challenge_id, options = sign_in_options(db, clock)
    with pytest.raises(Forbidden):
        verify(db, clock, challenge_id, sam_device.get(options))
    db.rollback()  # (the test's own session: let the app's requests write)
    token = token_for(client, mailbox, member.email)
    assert_error(
        client.post("/api/account/passkeys/options", headers=bearer(token)), 403, "forbidden"
    )
