"""A fresh sign-in: the person proves again that it is them (admin work needs a sign-in
from the last 15 minutes, app.core.access) without starting a new session. The emailed
code, then, for a person with an authenticator app, the app's code or a recovery code
(app.core.mfa); the current session's ``authenticated_at`` moves to now. The checks draw
on the same budgets and slow-down as a sign-in's (app.core.code_checks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.core import code_checks, events, mfa, totp
from app.core.budgets import CodeBudgets
from app.core.codes import check_code, check_link, consume, require_code_shape
from app.core.errors import N_, InvalidCode, MfaRequired
from app.core.events import Origin
from app.core.sessions import Current
from app.crypto import Hasher
from app.models import Challenge, UserSession


def reauthenticate(
    db: Session,
    hasher: Hasher,
    current: Current,
    challenge_id: str,
    code: str,
    *,
    now: datetime,
    origin: Origin,
    device_cookie: str | None = None,
    budgets: CodeBudgets,
    link_secret: str | None = None,
) -> UserSession:
    """Confirm it is still the same person (a fresh code) without starting a new session:
    the current session's ``authenticated_at`` moves to now. For a person with an
    authenticator app the emailed code is only the first step: MfaRequired hands over a
    second step (:func:`complete_reauth`). The check draws on ``budgets`` and the
    address's slow-down like a sign-in's. With ``link_secret`` the mail's link stands in
    for the code (app.core.sign_in_links checks the browser first). Raises like sign_in."""
    challenge = db.get(Challenge, challenge_id) if isinstance(challenge_id, str) else None
    if challenge is None or challenge.user_id != current.user.id:
        raise InvalidCode(N_("That code has expired or was replaced. Ask for a new code."))
    if link_secret is None:
        require_code_shape(code)  # a typing slip costs no try and no budget
    code_checks.check_for_person(
        db, hasher, budgets, current.user, device_cookie, origin=origin, now=now
    )
    if link_secret is None:
        check_code(db, hasher, challenge, code, [current.user], now=now, origin=origin)
    else:
        check_link(hasher, challenge, link_secret, [current.user], now=now)
    consume(db, challenge, now)
    if totp.is_enabled(current.user):
        step = mfa.new_step(
            db, current.user, "reauth", now=now, origin=origin, session_id=current.session.id
        )
        raise MfaRequired(step=step)
    return mark_fresh(db, hasher, current, now=now, origin=origin)


def complete_reauth(
    db: Session,
    hasher: Hasher,
    current: Current,
    step_id: str,
    *,
    code: str | None = None,
    recovery_code: str | None = None,
    now: datetime,
    origin: Origin,
    device_cookie: str | None = None,
    budgets: CodeBudgets,
) -> UserSession:
    """Answer a fresh sign-in's second step (the app's code or a recovery code); the
    current session's sign-in time moves to now. Raises InvalidCode, ChallengeLocked or
    RateLimited."""
    step = mfa.open_step(db, step_id, "reauth", now=now)
    if step.session_id != current.session.id:
        raise InvalidCode(N_("That sign-in step has ended. Start again with a new emailed code."))
    code_checks.check_for_person(
        db, hasher, budgets, current.user, device_cookie, origin=origin, now=now
    )
    mfa.check_second_factor(
        db,
        hasher,
        step,
        current.user,
        code=code,
        recovery_code=recovery_code,
        now=now,
        origin=origin,
    )
    mfa.consume(db, step, now)
    return mark_fresh(db, hasher, current, now=now, origin=origin, second_factor=True)


def mark_fresh(
    db: Session,
    hasher: Hasher,
    current: Current,
    *,
    now: datetime,
    origin: Origin,
    second_factor: bool = False,
) -> UserSession:
    code_checks.right_code(db, hasher, current.user.email)
    current.session.authenticated_at = now
    events.record(
        db,
        "session.reauthenticated",
        now=now,
        tenant_id=current.tenant.id,
        origin=origin,
        actor_id=current.user.id,
        subject_id=current.user.id,
        session_id=current.session.id,
        **({"second_factor": True} if second_factor else {}),
    )
    db.flush()
    return current.session
