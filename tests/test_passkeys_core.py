"""Passkey rules in the core (app.core.passkeys, app.core.passkey_challenges), with a
software authenticator: a P-256 key pair that answers WebAuthn ceremonies as an
authenticator would (attestation ``none``). The browser tests (test_browser_passkeys.py)
run the same ceremonies in Chromium; these cover what a browser cannot be made to send:
expired challenges, other origins and relying parties, missing user verification, changed
backup flags, counters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.core import events, passkeys
from app.core.errors import Forbidden
from app.core.passkey_challenges import PasskeyRefused, RelyingParty
from app.models import Alert, Event, Passkey, PasskeyChallenge
from testkit.api import assert_error, bearer, token_for
from testkit.webauthn import RP, SoftAuthenticator, b64, register, unb64


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
    rp = RelyingParty.from_base_url("https://id.Acme.test:8443/holdfast", "Acme")
    assert (rp.id, rp.origin, rp.name) == ("id.acme.test", "https://id.acme.test:8443", "Acme")
    with pytest.raises(ValueError, match="no host"):
        RelyingParty.from_base_url("not a url", "x")


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
    with pytest.raises(PasskeyRefused, match="used already"):
        verify(db, clock, challenge_id, answer)


def test_an_expired_challenge_is_refused(db, clock, sam_device):
    challenge_id, options = sign_in_options(db, clock)
    clock.advance(minutes=5, seconds=1)
    with pytest.raises(PasskeyRefused, match="ended"):
        verify(db, clock, challenge_id, sam_device.get(options))


def test_another_origin_or_relying_party_is_refused(db, clock, sam_device):
    challenge_id, options = sign_in_options(db, clock)
    sam_device.origin = "http://localhost.evil.test"
    with pytest.raises(PasskeyRefused):
        verify(db, clock, challenge_id, sam_device.get(options))
    sam_device.origin = RP.origin
    # A challenge made for this relying party cannot be answered to another one.
    challenge_id, options = sign_in_options(db, clock)
    other = RelyingParty.from_base_url("http://other.test", "Other")
    with pytest.raises(PasskeyRefused, match="ended"):
        verify(db, clock, challenge_id, sam_device.get(options), rp=other)


def test_an_answer_without_user_verification_is_refused(db, clock, sam_device):
    challenge_id, options = sign_in_options(db, clock)
    with pytest.raises(PasskeyRefused):
        verify(db, clock, challenge_id, sam_device.get(options, verified=False))


def test_a_forged_signature_is_refused_and_raises_no_alert(db, clock, sam_device):
    challenge_id, options = sign_in_options(db, clock)
    answer = sam_device.get(options)
    answer["response"]["signature"] = b64(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    sam_device.count = 0  # a forger who also sends a low counter
    with pytest.raises(PasskeyRefused):
        verify(db, clock, challenge_id, answer)
    assert db.scalars(select(Alert).execution_options(all_tenants=True)).all() == []


def test_a_counter_going_back_is_a_clone(db, clock, sam_device, member):
    challenge_id, options = sign_in_options(db, clock)
    verify(db, clock, challenge_id, sam_device.get(options))
    db.commit()
    sam_device.count = 0  # the copy still counts from where the key was copied
    challenge_id, options = sign_in_options(db, clock)
    with pytest.raises(PasskeyRefused, match="looks copied"):
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
    with pytest.raises(PasskeyRefused, match="does not match"):
        verify(db, clock, challenge_id, sam_device.get(options))


def test_a_sign_in_limited_to_a_tenant_refuses_other_tenants_passkeys(db, clock, sam_device, make):
    globex = make.tenant("globex")
    challenge_id, options = sign_in_options(db, clock, tenant_id=globex.id)
    with pytest.raises(PasskeyRefused, match="another organisation"):
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
