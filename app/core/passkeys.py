"""Passkeys: WebAuthn credentials a person adds on the security page and signs in with,
with no email typed (discoverable credentials) and no emailed code.

The ceremonies run over py_webauthn (the ``webauthn`` package): it parses the browser's
JSON, the CBOR attestation and the COSE keys, and checks challenge, origin, relying-party
id hash, flags and signature. What this module adds:

* **Challenges** (app.core.passkey_challenges): single use, short-lived, bound to the
  purpose, relying party and origin they were made for, and for a registration or fresh
  sign-in to the session that asked.
* **Verification** asks for user verification (a PIN or biometric) on every ceremony:
  a passkey sign-in is then two factors at once (the device and the person), which is
  why it needs no emailed code and counts as an admin's second factor, as Keycloak's
  "passwordless" WebAuthn policy does. Attestation ``none`` is accepted (we do not
  restrict makers of authenticators).
* **Sign counters.** An authenticator that counts (most security keys; synced passkeys
  send 0) must count up: a signature whose counter is not above the stored one, with the
  signature itself valid, means the private key exists twice: a cloned authenticator.
  That sign-in is refused, audited (``passkey.cloned``) and raised as a high alert. The
  counter check runs only after the signature is verified, so a forged answer cannot raise
  alerts about someone's passkey.
* **Backup flags.** Backup eligibility (BE) is fixed for a credential's life: an answer
  that changes it is refused. Backup state (BS) may change and is stored.
* **Tenants.** Credentials are unique across the deployment; a sign-in may be limited to
  one tenant (``tenant_id`` on the options), and then a passkey of an account in any
  other tenant is refused. A fresh sign-in takes only the signed-in person's passkeys.
* **Policy.** A tenant that turns ``allow_passkeys`` off refuses new passkeys and passkey
  sign-ins of its people; existing passkeys stay listed so they can be removed
  (app.core.passkey_management: listing, renaming, removing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    bytes_to_base64url,
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.core import alerts, devices, events, mfa, reauth, session_limit, signin
from app.core.access import FreshSignInRequired, is_fresh
from app.core.errors import N_, Forbidden, SessionLimitReached, ValidationError
from app.core.events import Origin
from app.core.passkey_challenges import (
    PasskeyRefused,
    RelyingParty,
    claim_challenge,
    new_challenge,
)
from app.core.passkey_management import (
    MAX_NAME,
    audit,
    checked_name,
    list_passkeys,
    mail_owner,
)
from app.core.sessions import Current
from app.crypto import Hasher
from app.models import Device, Passkey, PasskeyChallenge, Tenant, User

#: what the browser is told to wait, in milliseconds (the challenge lives a little longer)
TIMEOUT_MS = 4 * 60 * 1000
MAX_PASSKEYS = 20
#: the step that keeps a verified passkey sign-in while the person chooses a session to
#: end (deny mode): app.models.MfaChallenge.purpose
LIMIT_STEP = "pk_limit"

_NOT_FRESH = N_("Confirm it's you first: adding a passkey needs a recent sign-in.")
_OTHER_SIGN_IN = N_("That passkey request was made for another sign-in. Try again.")


@dataclass
class Verified:
    """A passkey answer that passed: the passkey and its person."""

    passkey: Passkey
    user: User


def _options(options: Any) -> dict[str, Any]:
    """The options in the WebAuthn JSON form (``parse…OptionsFromJSON`` takes it)."""
    return options_to_json_dict(options)


# --- adding a passkey ---------------------------------------------------------------------


def registration_options(
    db: Session, rp: RelyingParty, current: Current, *, now: datetime
) -> tuple[PasskeyChallenge, dict[str, Any]]:
    """Creation options for a new passkey of the signed-in person: a discoverable
    credential (residentKey required), user verification required, attestation none, the
    person's passkeys excluded. Raises FreshSignInRequired (sign-in older than 15
    minutes), Forbidden (the tenant does not allow passkeys) or ValidationError (too many)."""
    check_allowed(current.tenant)
    if not is_fresh(current, now):
        raise FreshSignInRequired(_NOT_FRESH)
    mine = list_passkeys(db, current.user)
    if len(mine) >= MAX_PASSKEYS:
        raise ValidationError(
            N_("You have %(count)s passkeys: remove one first."), words={"count": MAX_PASSKEYS}
        )
    row = new_challenge(
        db,
        rp,
        "register",
        now=now,
        tenant_id=current.tenant.id,
        user_id=current.user.id,
        session_id=current.session.id,
    )
    return row, creation_options(rp, current.user, row, mine)


def creation_options(
    rp: RelyingParty, user: User, challenge: PasskeyChallenge, mine: list[Passkey]
) -> dict[str, Any]:
    """Creation options (WebAuthn JSON form) for a new passkey of ``user``, signing
    ``challenge``: a discoverable credential (residentKey required), user verification
    required, attestation none, the passkeys ``mine`` excluded."""
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=user.id.encode(),
        user_name=user.email,
        user_display_name=user.name or user.email,
        challenge=challenge.challenge,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[_descriptor(p) for p in mine],
    )
    return _options(options)


def register(
    db: Session,
    rp: RelyingParty,
    current: Current,
    challenge_id: Any,
    credential: Any,
    *,
    name: str | None,
    now: datetime,
    origin: Origin,
) -> Passkey:
    """Store the new passkey from the browser's ``credential`` (``toJSON()`` form) for
    the signed-in person; audited as ``passkey.added`` and mailed to them. Raises
    PasskeyRefused (bad challenge or answer), ValidationError (bad name, or the passkey
    is stored already), FreshSignInRequired or Forbidden as the options do."""
    check_allowed(current.tenant)
    if not is_fresh(current, now):
        raise FreshSignInRequired(_NOT_FRESH)
    clean_name = checked_name(name) if name is not None else None
    challenge = claim_challenge(db, rp, challenge_id, "register", now=now)
    if challenge.user_id != current.user.id or challenge.session_id != current.session.id:
        raise PasskeyRefused(_OTHER_SIGN_IN)
    new = check_new(db, rp, challenge, credential)
    return store(
        db,
        new,
        current.user,
        current.tenant,
        current.device,
        name=clean_name,
        now=now,
        origin=origin,
        session_id=current.session.id,
    )


@dataclass
class NewCredential:
    """A registration answer that passed (app.core.passkeys.check_new)."""

    verified: Any  # webauthn's VerifiedRegistration
    credential_id: str
    transports: list[str]


def check_new(
    db: Session, rp: RelyingParty, challenge: PasskeyChallenge, credential: Any
) -> NewCredential:
    """Verify a registration answer to the claimed ``challenge`` (user verification
    required). Raises PasskeyRefused (a bad answer) or ValidationError (the passkey is
    stored already)."""
    try:
        parsed = parse_registration_credential_json(_as_dict(credential))
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge.challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise PasskeyRefused(
            N_("That passkey could not be added: %(reason)s"), words={"reason": str(error)}
        ) from error
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.scalar(
        select(Passkey.id)
        .where(Passkey.credential_id == credential_id)
        .execution_options(all_tenants=True)
    ):
        raise ValidationError(N_("That passkey is added already."))
    transports = [str(t.value) for t in (parsed.response.transports or [])]
    return NewCredential(verified, credential_id, transports)


def store(
    db: Session,
    new: NewCredential,
    user: User,
    tenant: Tenant,
    device: Device,
    *,
    name: str | None,
    now: datetime,
    origin: Origin,
    session_id: str | None,
) -> Passkey:
    """Store a checked new passkey of ``user``, added on ``device`` (named ``name`` or
    after the device); audited as ``passkey.added`` and mailed to the person."""
    verified = new.verified
    passkey = Passkey(
        tenant_id=tenant.id,
        user_id=user.id,
        credential_id=new.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=name or _default_name(device),
        aaguid=str(verified.aaguid),
        transports=new.transports,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        created_at=now,
        created_device_id=device.id,
    )
    db.add(passkey)
    db.flush()
    audit(
        db,
        "passkey.added",
        user,
        passkey,
        now=now,
        origin=origin,
        session_id=session_id,
        name=passkey.name,
        synced=passkey.backup_eligible,
    )
    mail_owner(db, "passkey_added", user, tenant, passkey, now=now, origin=origin)
    return passkey


# --- using a passkey ----------------------------------------------------------------------


def sign_in_options(
    db: Session, rp: RelyingParty, *, now: datetime, tenant_id: str | None = None
) -> tuple[PasskeyChallenge, dict[str, Any]]:
    """Request options for signing in with any discoverable passkey (allowCredentials
    empty: the browser offers the person's passkeys for this site), optionally limited to
    one tenant. userVerification is "preferred" in the options, as browsers show autofill
    for; the answer must still carry it (see the module docstring)."""
    row = new_challenge(db, rp, "sign_in", now=now, tenant_id=tenant_id)
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=row.challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=[],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return row, _options(options)


def reauth_options(
    db: Session, rp: RelyingParty, current: Current, *, now: datetime
) -> tuple[PasskeyChallenge, dict[str, Any]]:
    """Request options for a fresh sign-in of the current session with one of the
    person's own passkeys. Raises ValidationError when they have none."""
    check_allowed(current.tenant)
    mine = list_passkeys(db, current.user)
    if not mine:
        raise ValidationError(N_("You have no passkey yet: use an emailed code."))
    row = new_challenge(
        db,
        rp,
        "reauth",
        now=now,
        tenant_id=current.tenant.id,
        user_id=current.user.id,
        session_id=current.session.id,
    )
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=row.challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=[_descriptor(p) for p in mine],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return row, _options(options)


def verify(
    db: Session,
    rp: RelyingParty,
    challenge_id: Any,
    credential: Any,
    *,
    purpose: str,
    now: datetime,
    origin: Origin,
    device_id: str | None = None,
    current: Current | None = None,
) -> Verified:
    """Check a sign-in (or, with ``current``, a fresh sign-in) answer: the challenge is
    used up, the passkey must exist, belong to the tenant the challenge names and to
    ``current``'s person, verify with user verification, keep its backup eligibility and
    count up. The passkey's counter, backup state and last use are then updated.

    Raises PasskeyRefused for any of those (a counter going back is also audited as
    ``passkey.cloned`` and raised as a high alert; the refusal commits those), or Forbidden
    (the person's tenant does not allow passkeys)."""
    challenge = claim_challenge(db, rp, challenge_id, purpose, now=now)
    if current is not None and challenge.session_id != current.session.id:
        raise PasskeyRefused(_OTHER_SIGN_IN)
    try:
        parsed = parse_authentication_credential_json(_as_dict(credential))
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise PasskeyRefused() from error
    credential_id = bytes_to_base64url(parsed.raw_id)
    passkey = db.scalars(
        select(Passkey)
        .where(Passkey.credential_id == credential_id)
        .with_for_update()
        .execution_options(all_tenants=True, populate_existing=True)
    ).one_or_none()
    if passkey is None:
        raise PasskeyRefused(
            N_(
                "That passkey is not (or no longer) on any account here. Remove it from your "
                "device, or sign in with an emailed code."
            )
        )
    if challenge.tenant_id is not None and passkey.tenant_id != challenge.tenant_id:
        raise PasskeyRefused(N_("That passkey belongs to an account in another organisation."))
    if current is not None and passkey.user_id != current.user.id:
        raise PasskeyRefused(N_("That passkey belongs to another account."))
    handle = parsed.response.user_handle
    if handle is not None and handle != passkey.user_id.encode():
        raise PasskeyRefused()
    user = db.scalars(
        select(User).where(User.id == passkey.user_id).execution_options(all_tenants=True)
    ).one()
    tenant = db.get_one(Tenant, user.tenant_id)
    check_allowed(tenant)
    try:
        checked = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge.challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=passkey.public_key,
            # The counter is checked below, once the signature is known to be good.
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise PasskeyRefused() from error
    eligible = checked.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    if eligible != passkey.backup_eligible:
        raise PasskeyRefused(N_("That passkey's answer does not match the passkey added."))
    counted = checked.new_sign_count
    if (counted or passkey.sign_count) and counted <= passkey.sign_count:
        _cloned(db, passkey, user, counted, now=now, origin=origin)
        raise PasskeyRefused(
            N_(
                "That passkey was refused: its authenticator looks copied. Your administrator "
                "has been told; sign in with an emailed code."
            )
        )
    passkey.sign_count = counted
    passkey.backed_up = checked.credential_backed_up
    passkey.last_used_at = now
    if device_id is not None:
        passkey.last_device_id = device_id
    db.flush()
    return Verified(passkey, user)


def sign_in(
    db: Session,
    hasher: Hasher,
    rp: RelyingParty,
    challenge_id: Any,
    credential: Any,
    options: signin.Options,
    *,
    device_cookie: str | None,
    now: datetime,
    origin: Origin,
    keep_choice: bool = False,
) -> signin.SignIn:
    """Sign in with a passkey: :func:`verify`, then a session as a code sign-in starts
    one (session limit, device, security rules; ``sign_in_method`` ``passkey``), with no
    second step: the passkey with user verification is two factors. Raises like
    :func:`verify` and app.core.signin.start_without_code (SessionLimitReached in deny
    mode: the challenge is used up, so the caller runs a new ceremony with
    ``end_session_id``; or, with ``keep_choice``, the error carries a step,
    ``details["step"]``, that :func:`finish_at_limit` finishes with the session chosen,
    with no second ceremony: the sign-in page's way, as the code page keeps the code)."""
    verified = verify(db, rp, challenge_id, credential, purpose="sign_in", now=now, origin=origin)
    try:
        result = signin.start_without_code(
            db,
            hasher,
            verified.user.id,
            options,
            method="passkey",
            device_cookie=device_cookie,
            now=now,
            origin=origin,
        )
    except SessionLimitReached as error:
        if keep_choice:
            error.details["step"] = mfa.new_step(
                db,
                verified.user,
                LIMIT_STEP,
                now=now,
                origin=origin,
                options={**options.as_json(), "passkey_id": verified.passkey.id},
                device_hash=devices.device_hash(db, hasher, verified.user, device_cookie),
            )
        raise
    return _passkey_session(db, result, verified.passkey, now=now, origin=origin)


def finish_at_limit(
    db: Session,
    hasher: Hasher,
    step_id: Any,
    *,
    end_session_id: str | None,
    now: datetime,
    origin: Origin,
) -> signin.SignIn:
    """Finish a passkey sign-in that met the session limit in deny mode (the step of
    :func:`sign_in` with ``keep_choice``: the passkey was verified then) by ending the
    live session ``end_session_id``. The step lives as a second step does (10 minutes)
    and is used once. Raises SessionLimitReached (no session chosen, or one that has
    ended: choose again; nothing used up), InvalidCode (the step is unknown, used or
    expired: sign in again), PasskeyRefused (the passkey was removed meanwhile),
    Forbidden or InvalidSession."""
    step = mfa.open_step(db, step_id, LIMIT_STEP, now=now)
    user, tenant = signin.lock_account(db, step.user_id)
    check_allowed(tenant)
    passkey = db.scalars(
        select(Passkey)
        .where(Passkey.id == step.options.get("passkey_id"), Passkey.user_id == user.id)
        .execution_options(all_tenants=True)
    ).one_or_none()
    if passkey is None:
        raise PasskeyRefused(N_("That passkey was removed meanwhile. Sign in again."))
    options = replace(signin.Options.from_json(step.options), end_session_id=end_session_id)
    chosen = session_limit.within_limit(db, user, tenant, end_session_id, now)
    mfa.consume(db, step, now)
    result = signin.start_session(
        db,
        hasher,
        user,
        tenant,
        options,
        chosen,
        step.device_hash,
        now=now,
        origin=origin,
        method="passkey",
    )
    return _passkey_session(db, result, passkey, now=now, origin=origin)


def _passkey_session(
    db: Session, result: signin.SignIn, passkey: Passkey, *, now: datetime, origin: Origin
) -> signin.SignIn:
    """A session started by ``passkey``: its device noted, ``passkey.used`` audited."""
    passkey.last_device_id = result.device.id
    result.second_factor = "passkey"
    audit(
        db,
        "passkey.used",
        result.user,
        passkey,
        now=now,
        origin=origin,
        session_id=result.session.id,
    )
    db.flush()
    return result


def reauthenticate(
    db: Session,
    hasher: Hasher,
    rp: RelyingParty,
    current: Current,
    challenge_id: Any,
    credential: Any,
    *,
    now: datetime,
    origin: Origin,
) -> None:
    """A fresh sign-in with one of the person's passkeys: the current session's sign-in
    time moves to now (and it counts as the second factor). Raises like :func:`verify`."""
    verify(
        db,
        rp,
        challenge_id,
        credential,
        purpose="reauth",
        now=now,
        origin=origin,
        device_id=current.device.id,
        current=current,
    )
    reauth.mark_fresh(db, hasher, current, now=now, origin=origin, second_factor=True)


def _cloned(
    db: Session, passkey: Passkey, user: User, counted: int, *, now: datetime, origin: Origin
) -> None:
    details: dict[str, Any] = {
        "passkey_id": passkey.id,
        "stored_count": passkey.sign_count,
        "sent_count": counted,
    }
    events.record(
        db,
        "passkey.cloned",
        now=now,
        tenant_id=passkey.tenant_id,
        origin=origin,
        subject_id=user.id,
        **details,
    )
    alerts.raise_alert(
        db,
        "passkey_cloned",
        "high",
        tenant_id=passkey.tenant_id,
        now=now,
        summary=f'A copy of {user.email}\'s passkey "{passkey.name}" was used: its '
        f"signature counter went back ({counted} after {passkey.sign_count}).",
        user_id=user.id,
        origin=origin,
        **details,
    )


# --- helpers ------------------------------------------------------------------------------


def check_allowed(tenant: Tenant) -> None:
    """Raises Forbidden when the tenant does not allow passkeys."""
    if not tenant.allow_passkeys:
        raise Forbidden(N_("Your organisation does not allow passkeys."))


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.structs import AuthenticatorTransport

    known = {t.value for t in AuthenticatorTransport}
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(passkey.credential_id),
        transports=[AuthenticatorTransport(t) for t in passkey.transports if t in known] or None,
    )


def _as_dict(credential: Any) -> dict[str, Any]:
    if not isinstance(credential, dict):
        raise ValueError("credential must be an object")
    return credential


def _default_name(device: Device) -> str:
    return device.display_name[:MAX_NAME]
