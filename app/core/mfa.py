"""The second factor: who needs one, the step that asks for it, and recovery codes.

* **Who.** Everyone with an authenticator app (adding one on /account/security turns
  two-step sign-in on for that person), and every admin of a tenant whose policy requires
  an app of admins (``require_totp_for_admins``). For them the emailed code is only the
  first step of a sign-in and of a fresh sign-in (/login/again): the app's current code,
  or one of their recovery codes, is the second. Nothing signs them in on the emailed
  code alone, and the app's code alone never signs anyone in either.
* **The step.** An :class:`~app.models.MfaChallenge`, made once the first step passed (the
  emailed code is then used up): it lives :data:`STEP_LIFETIME`, dies after
  :data:`MAX_ATTEMPTS` wrong codes (each claimed with one conditional UPDATE, as the
  emailed code's are) and is used once. It carries the first step's sign-in options, so
  that the session it starts is the one the first step asked for.
* **Required but no app yet.** An admin whose tenant requires an app and who has none adds
  one right after the emailed code, as Keycloak's "Configure OTP" required action does:
  the step's purpose is ``enrol`` and its only way on is adding an app; the sign-in
  finishes when the app's first code is right. Until then there is no session at all, so
  nothing but the enrolment pages is reachable. (Whoever reads such an admin's mailbox
  before they enrol could enrol an app of their own: the first enrolment is the weak
  moment of any such scheme. It is audited, and the admin's next sign-in needs the app.)
* **Recovery codes.** Ten single-use codes (``xxxxx-xxxxx``, 50 random bits each), made
  when an app is added and whenever the person asks for new ones (which voids the old
  ones), shown once, stored as keyed hashes. One is accepted wherever the app's code is
  asked for at sign-in; its use is audited (``recovery_code.used``) and mailed to the
  person with how many are left.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app import otp
from app.core import code_checks, events, totp
from app.core.access import FreshSignInRequired, is_fresh
from app.core.deployment import deployment
from app.core.errors import N_, ChallengeLocked, InvalidCode, ValidationError
from app.core.events import Origin
from app.core.sessions import Current
from app.crypto import Hasher
from app.models import MfaChallenge, RecoveryCode, Tenant, User, UserSession
from app.outbox import queue_mail

STEP_LIFETIME = timedelta(minutes=10)
MAX_ATTEMPTS = 5
RECOVERY_CODES = 10
#: no 0/o, 1/l/i: a code copied from paper reads one way only (31 symbols, 5 bits each)
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 10


def required(user: User, tenant: Tenant) -> bool:
    """Whether signing in as ``user`` takes a second factor (see the module docstring)."""
    return totp.is_enabled(user) or (tenant.require_totp_for_admins and user.role == "admin")


def new_step(
    db: Session,
    user: User,
    purpose: str,
    *,
    now: datetime,
    origin: Origin,
    session_id: str | None = None,
    options: dict[str, Any] | None = None,
    device_hash: str | None = None,
) -> MfaChallenge:
    """A second step for ``user`` (``sign_in``, ``reauth`` of ``session_id``, or
    ``enrol``), audited as ``mfa.challenged``. It replaces the person's earlier open
    steps: one is open at a time, so its five tries are all there are (each new step
    also costs a right emailed code)."""
    db.execute(
        update(MfaChallenge)
        .where(MfaChallenge.user_id == user.id, MfaChallenge.consumed_at.is_(None))
        .values(consumed_at=now)
        .execution_options(synchronize_session=False, all_tenants=True)
    )
    step = MfaChallenge(
        id=f"mfa_{secrets.token_urlsafe(16)}",
        tenant_id=user.tenant_id,
        user_id=user.id,
        purpose=purpose,
        session_id=session_id,
        created_at=now,
        expires_at=now + STEP_LIFETIME,
        attempts=0,
        ip=origin.ip[:45],
        options=options or {},
        device_hash=device_hash,
    )
    db.add(step)
    events.record(
        db,
        "mfa.challenged",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        subject_id=user.id,
        session_id=session_id,
        purpose=purpose,
    )
    db.flush()
    return step


def open_step(db: Session, step_id: str, purpose: str, *, now: datetime) -> MfaChallenge:
    """The live step ``step_id`` of ``purpose``. Raises InvalidCode (unknown, of another
    purpose, expired or used: sign in again) or ChallengeLocked (too many wrong codes)."""
    step = (
        db.scalars(
            select(MfaChallenge)
            .where(MfaChallenge.id == step_id)
            .execution_options(all_tenants=True, populate_existing=True)
        ).one_or_none()
        if isinstance(step_id, str) and len(step_id) <= 40
        else None
    )
    if step is None or step.purpose != purpose or step.consumed_at is not None:
        raise InvalidCode(N_("That sign-in step has ended. Start again with a new emailed code."))
    if step.attempts >= MAX_ATTEMPTS:
        raise ChallengeLocked(N_("Too many wrong codes. Start again with a new emailed code."))
    if now >= step.expires_at:
        raise InvalidCode(N_("That sign-in step has expired. Start again with a new emailed code."))
    return step


def check_second_factor(
    db: Session,
    hasher: Hasher,
    step: MfaChallenge,
    user: User,
    *,
    code: str | None,
    recovery_code: str | None,
    now: datetime,
    origin: Origin,
) -> str:
    """Accept the app's code for now or one of the person's unused recovery codes
    (either, never both); returns which (``totp`` or ``recovery_code``). A wrong one is
    counted against the step (atomically: never more than MAX_ATTEMPTS), audited as
    ``mfa.failed`` and counted for the account's wrong-code rules (app.core.sign_in_rules);
    then InvalidCode, or ChallengeLocked at the limit."""
    if code and recovery_code:
        raise ValidationError(N_("Send the app's code or a recovery code, not both."), field="code")
    if recovery_code is not None:
        if use_recovery_code(db, hasher, user, recovery_code, now=now, origin=origin):
            return "recovery_code"
    elif code is not None and totp.verify(db, hasher, user, code, now=now, origin=origin):
        return "totp"
    attempts = claim_attempt(db, step)
    events.record(
        db,
        "mfa.failed",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        subject_id=user.id,
        session_id=step.session_id,
        purpose=step.purpose,
        attempts=attempts,
    )
    db.flush()
    code_checks.wrong_code(db, hasher, address=user.email, accounts=[user], now=now, origin=origin)
    if attempts >= MAX_ATTEMPTS:
        raise ChallengeLocked(N_("Too many wrong codes. Start again with a new emailed code."))
    left = MAX_ATTEMPTS - attempts
    raise InvalidCode.tries_left(left)


def claim_attempt(db: Session, step: MfaChallenge) -> int:
    """Count one wrong code against the step; how many there have been. One conditional
    UPDATE … RETURNING, so parallel wrong codes never count past MAX_ATTEMPTS. Raises
    ChallengeLocked (past the limit) or InvalidCode (the step was used meanwhile)."""
    counted = db.execute(
        update(MfaChallenge)
        .where(
            MfaChallenge.id == step.id,
            MfaChallenge.attempts < MAX_ATTEMPTS,
            MfaChallenge.consumed_at.is_(None),
        )
        .values(attempts=MfaChallenge.attempts + 1)
        .returning(MfaChallenge.attempts)
        .execution_options(synchronize_session=False, all_tenants=True)
    ).scalar_one_or_none()
    if counted is None:
        used = db.scalar(
            select(MfaChallenge.consumed_at)
            .where(MfaChallenge.id == step.id)
            .execution_options(all_tenants=True)
        )
        if used is not None:
            raise InvalidCode(
                N_("That sign-in step has ended. Start again with a new emailed code.")
            )
        raise ChallengeLocked(N_("Too many wrong codes. Start again with a new emailed code."))
    return int(counted)


def consume(db: Session, step: MfaChallenge, now: datetime) -> None:
    """Use the step up, atomically: of parallel answers exactly one gets past here.
    Raises InvalidCode for the others."""
    done = db.execute(
        update(MfaChallenge)
        .where(
            MfaChallenge.id == step.id,
            MfaChallenge.consumed_at.is_(None),
            MfaChallenge.attempts < MAX_ATTEMPTS,
        )
        .values(consumed_at=now)
        .execution_options(synchronize_session=False, all_tenants=True)
    ).rowcount  # type: ignore[attr-defined]
    if done != 1:
        raise InvalidCode(N_("That sign-in step has ended. Start again with a new emailed code."))


# --- recovery codes ------------------------------------------------------------------------


def _recovery_hash(hasher: Hasher, user: User, raw: str) -> str | None:
    clean = "".join(ch for ch in raw.lower() if ch.isalnum()) if isinstance(raw, str) else ""
    if len(clean) != RECOVERY_LENGTH or any(ch not in RECOVERY_ALPHABET for ch in clean):
        return None
    return hasher.hash("recovery code", user.id, clean)


def make_recovery_codes(
    db: Session,
    hasher: Hasher,
    user: User,
    *,
    now: datetime,
    origin: Origin,
    session_id: str | None = None,
) -> list[str]:
    """Ten new recovery codes for the person, replacing any they had (those stop
    working); returned to be shown once. Audited as ``recovery_codes.made``."""
    replaced = db.execute(
        delete(RecoveryCode)
        .where(RecoveryCode.user_id == user.id)
        .execution_options(synchronize_session=False, all_tenants=True)
    ).rowcount  # type: ignore[attr-defined]
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.add(
            RecoveryCode(
                tenant_id=user.tenant_id,
                user_id=user.id,
                code_hash=_recovery_hash(hasher, user, raw),
                created_at=now,
            )
        )
    events.record(
        db,
        "recovery_codes.made",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        session_id=session_id,
        count=RECOVERY_CODES,
        replaced=int(replaced or 0),
    )
    db.flush()
    return codes


def recovery_codes_left(db: Session, user: User) -> int:
    return (
        db.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
            .execution_options(all_tenants=True)
        )
        or 0
    )


def use_recovery_code(
    db: Session, hasher: Hasher, user: User, raw: str, *, now: datetime, origin: Origin
) -> bool:
    """Use one of the person's recovery codes: True once per code, across all nodes (one
    conditional UPDATE). Audited as ``recovery_code.used`` and mailed to the person."""
    code_hash = _recovery_hash(hasher, user, raw)
    if code_hash is None:
        return False
    used = db.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == code_hash,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False, all_tenants=True)
    ).rowcount  # type: ignore[attr-defined]
    if used != 1:
        return False
    left = recovery_codes_left(db, user)
    events.record(
        db,
        "recovery_code.used",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        left=left,
    )
    tenant = db.get_one(Tenant, user.tenant_id)
    queue_mail(
        db,
        "recovery_code_used",
        to=user.email,
        values={
            "product": deployment(db).product,
            "tenant_name": tenant.name,
            "at": now,
            "ip": origin.ip,
            "left": left,
        },
        tenant_id=user.tenant_id,
        now=now,
        language=user.language,
    )
    return True


def renew_recovery_codes(
    db: Session, hasher: Hasher, current: Current, *, now: datetime, origin: Origin
) -> list[str]:
    """New recovery codes for the signed-in person (the old ones stop working). Raises
    FreshSignInRequired (stale sign-in) or ValidationError (no authenticator app)."""
    if not is_fresh(current, now):
        raise FreshSignInRequired(
            N_("Enter a new sign-in code to continue: new recovery codes need a recent sign-in.")
        )
    if not totp.is_enabled(current.user):
        raise ValidationError(N_("Add an authenticator app first: recovery codes stand in for it."))
    return make_recovery_codes(
        db, hasher, current.user, now=now, origin=origin, session_id=current.session.id
    )


def looks_like_app_code(raw: str) -> bool:
    """Whether what a person typed is an app code (6 digits) rather than a recovery code:
    the sign-in page's one field takes either."""
    return len(otp.normalise_code(raw)) == otp.CODE_DIGITS and not any(c.isalpha() for c in raw)


def add_app(
    db: Session,
    hasher: Hasher,
    current: Current,
    code: str,
    *,
    now: datetime,
    origin: Origin,
    sign_out_others: bool = False,
) -> tuple[list[UserSession], list[str]]:
    """Turn two-step sign-in on from the security page: enable the pending app when
    ``code`` is right (app.core.totp.confirm) and make the person's ten recovery codes,
    to be shown once. Returns (the other sessions ended, the codes); raises like
    totp.confirm."""
    ended = totp.confirm(
        db, hasher, current, code, now=now, origin=origin, sign_out_others=sign_out_others
    )
    codes = make_recovery_codes(
        db, hasher, current.user, now=now, origin=origin, session_id=current.session.id
    )
    return ended, codes
