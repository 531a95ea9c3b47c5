"""Authenticator apps (TOTP, RFC 6238, via pyotp): enrol, confirm, verify, remove.

* 30-second steps, 6 digits, SHA-1: what every authenticator app does by default. A code
  from one step before or after the current one is accepted too (clock drift).
* Each code is accepted once, across all nodes: acceptance is one conditional UPDATE that
  moves ``users.totp_last_step`` forward, so the same step (or an older one) never passes
  again, whichever node sees it.
* The secret is stored sealed (app.sealing: AES-GCM under a key derived from the secret
  key, opened under a fallback key too) by the Sealer that rides with the Hasher, so the
  core needs nothing beyond the Hasher it already has and a database dump alone yields no
  secret. The person's id is the context: a secret copied to another row does not open.
* Enrolment stores a pending secret (``totp_enabled_at`` NULL) and shows it once; the first
  right code from the app enables it. Starting an enrolment and removing the app both need
  a fresh sign-in: the app is a person's second factor, so a stolen session must not be
  able to plant one of its own or take it away.
* Signing in: with an app, the emailed code is the first step and the app's code the
  second (app.core.mfa, app.core.signin); the app's code alone never signs in.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime

import pyotp
from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app import otp
from app.core import events, passkey_rules
from app.core.access import FreshSignInRequired, is_fresh
from app.core.errors import N_, HoldfastError, InvalidCode, ValidationError
from app.core.events import Origin
from app.core.sessions import Current, end_other_sessions
from app.crypto import Hasher
from app.db import opened
from app.models import RecoveryCode, User, UserSession
from app.sealing import TOTP_SECRET, Unsealable

log = logging.getLogger(__name__)

STEP_SECONDS = 30
#: steps either side of now whose code is still accepted
DRIFT_STEPS = 1


class TotpRequired(HoldfastError):
    code, status, message = (
        "totp_required",
        403,
        "Your organisation requires admins to use an authenticator app. Add one to continue.",
    )


@dataclass(frozen=True)
class Enrolment:
    """A pending secret, shown to the person once."""

    secret: str
    #: the otpauth:// URI an authenticator app reads from the QR code
    uri: str


def is_enabled(user: User) -> bool:
    return user.totp_enabled_at is not None


def step_at(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def require_for_admin(current: Current) -> None:
    """Raises TotpRequired when the tenant requires a passkey or an authenticator app of
    admins and this admin has neither yet (app.core.passkey_rules)."""
    if (
        current.tenant.require_totp_for_admins
        and current.user.role == "admin"
        and not is_enabled(current.user)
        and not (
            passkey_rules.passkey_counts(current.tenant)
            and passkey_rules.has_passkey(opened(current.db), current.user)
        )
    ):
        raise TotpRequired()


def start(
    db: Session,
    hasher: Hasher,
    current: Current,
    *,
    now: datetime,
    origin: Origin,
    issuer: str = "Holdfast",
) -> Enrolment:
    """A new pending secret for the person (replacing any earlier pending one), to be
    shown once. Raises FreshSignInRequired (stale sign-in) or ValidationError (an app is
    already enabled: remove it first)."""
    if not is_fresh(current, now):
        raise FreshSignInRequired(
            N_(
                "Enter a new sign-in code to continue: changing your authenticator app needs "
                "a recent sign-in."
            )
        )
    return begin(
        db,
        hasher,
        current.user,
        now=now,
        origin=origin,
        session_id=current.session.id,
        issuer=issuer,
    )


def begin(
    db: Session,
    hasher: Hasher,
    user: User,
    *,
    now: datetime,
    origin: Origin,
    session_id: str | None,
    issuer: str = "Holdfast",
) -> Enrolment:
    """A new pending secret for ``user`` (the caller has checked they may add an app: a
    fresh session, or the sign-in step that requires one). Raises ValidationError when
    an app is already enabled."""
    if is_enabled(user):
        raise ValidationError(N_("An authenticator app is already set up. Remove it first."))
    secret = pyotp.random_base32()
    user.totp_secret = _seal(hasher, user.id, secret)
    user.totp_last_step = None
    events.record(
        db,
        "totp.enrolment_started",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        session_id=session_id,
    )
    db.flush()
    uri = pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
        name=user.email, issuer_name=issuer
    )
    return Enrolment(secret=secret, uri=uri)


def confirm(
    db: Session,
    hasher: Hasher,
    current: Current,
    code: str,
    *,
    now: datetime,
    origin: Origin,
    sign_out_others: bool = False,
) -> list[UserSession]:
    """Enable the pending secret when ``code`` is right; with ``sign_out_others`` also end
    the person's other sessions (returned). Raises ValidationError (no enrolment under
    way) or InvalidCode."""
    user = current.user
    if not enable(db, hasher, user, code, now=now):
        raise InvalidCode(
            N_("That code is not right. Enter the 6-digit code your app shows now."), field="code"
        )
    ended = end_other_sessions(db, current, now=now, origin=origin) if sign_out_others else []
    record_enabled(db, user, now=now, origin=origin, session_id=current.session.id, ended=ended)
    return ended


def enable(db: Session, hasher: Hasher, user: User, code: str, *, now: datetime) -> bool:
    """Enable the person's pending secret when ``code`` is the app's code for now; False
    when it is not. Raises ValidationError when no enrolment is under way."""
    if is_enabled(user) or user.totp_secret is None:
        raise ValidationError(N_("Start adding an authenticator app first."), field="code")
    step = _matching_step(hasher, user, code, now)
    # Conditional: of two confirmations racing, one enables; the code is then used up.
    enabled = (
        step is not None
        and db.execute(
            update(User)
            .where(User.id == user.id, User.totp_enabled_at.is_(None))
            .values(totp_enabled_at=now, totp_last_step=step)
            .execution_options(synchronize_session=False, all_tenants=True)
        ).rowcount  # type: ignore[attr-defined]
        == 1
    )
    if enabled:
        set_committed_value(user, "totp_enabled_at", now)
        set_committed_value(user, "totp_last_step", step)
    return enabled


def record_enabled(
    db: Session,
    user: User,
    *,
    now: datetime,
    origin: Origin,
    session_id: str | None,
    ended: list[UserSession] | None = None,
    at_sign_in: bool = False,
) -> None:
    """Audit an app just enabled (``totp.enabled``)."""
    details: dict[str, object] = {"other_sessions_ended": len(ended or [])}
    if at_sign_in:
        details["at_sign_in"] = True  # required by the tenant, added before any session
    events.record(
        db,
        "totp.enabled",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        session_id=session_id,
        **details,
    )
    db.flush()


def verify(
    db: Session,
    hasher: Hasher,
    user: User,
    code: str,
    *,
    now: datetime,
    origin: Origin = events.SYSTEM,
) -> bool:
    """True when ``code`` is the person's app code for now (one step of drift either way)
    and no code of that step or a later one was accepted before, on any node; audited as
    ``totp.accepted``. False for a person without an enabled app."""
    if not is_enabled(user):
        return False
    step = _matching_step(hasher, user, code, now)
    if step is None:
        return False
    accepted = db.execute(
        update(User)
        .where(
            User.id == user.id,
            User.totp_enabled_at.is_not(None),
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False, all_tenants=True)
    ).rowcount  # type: ignore[attr-defined]
    if accepted != 1:
        return False
    set_committed_value(user, "totp_last_step", step)
    events.record(
        db,
        "totp.accepted",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        drift=step - step_at(now),
    )
    return True


def remove(
    db: Session,
    current: Current,
    *,
    now: datetime,
    origin: Origin,
    sign_out_others: bool = False,
) -> list[UserSession]:
    """Remove the person's authenticator app (or a pending enrolment); with
    ``sign_out_others`` also end their other sessions (returned). Raises
    FreshSignInRequired when the sign-in is not recent."""
    if not is_fresh(current, now):
        raise FreshSignInRequired(
            N_(
                "Enter a new sign-in code to continue: removing your authenticator app needs "
                "a recent sign-in."
            )
        )
    user = current.user
    had = is_enabled(user)
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    # Recovery codes stand in for the app: they go with it.
    db.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.user_id == user.id)
        .execution_options(synchronize_session=False)
    )
    ended = end_other_sessions(db, current, now=now, origin=origin) if sign_out_others else []
    events.record(
        db,
        "totp.removed",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        session_id=current.session.id,
        was_enabled=had,
        other_sessions_ended=len(ended),
    )
    db.flush()
    return ended


def code_for(hasher: Hasher, user: User, now: datetime, *, offset: int = 0) -> str:
    """The app's code at ``now`` plus ``offset`` steps (for the CLI and tests: what the
    person's phone shows)."""
    secret = _open(hasher, user)
    if secret is None:
        raise ValidationError(N_("No authenticator app is set up."))
    return pyotp.TOTP(secret, interval=STEP_SECONDS).generate_otp(step_at(now) + offset)


def _matching_step(hasher: Hasher, user: User, code: str, now: datetime) -> int | None:
    digits = otp.normalise_code(code if isinstance(code, str) else "")
    if len(digits) != 6:
        return None
    secret = _open(hasher, user)
    if secret is None:
        return None
    app = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = step_at(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(app.generate_otp(step), digits):
            return step
    return None


def _seal(hasher: Hasher, user_id: str, secret: str) -> bytes:
    return hasher.sealer.seal(TOTP_SECRET, secret.encode(), user_id)


def _open(hasher: Hasher, user: User) -> str | None:
    sealed = user.totp_secret
    if not sealed:
        return None
    try:
        return hasher.sealer.open(TOTP_SECRET, sealed, user.id).decode()
    except Unsealable as error:
        # A secret key that is gone, or a row edited by hand: the app cannot be used (the
        # emailed code still works). /readyz and `holdfast secrets check` report it too.
        log.error("authenticator app of %s: %s", user.id, error)
        return None
