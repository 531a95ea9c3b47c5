"""Adding a first passkey to finish a sign-in, where the tenant requires passkeys
(``require_passkeys``) and the person has none (app.core.passkey_rules): the emailed code
(and, for a person with an authenticator app, the app's code after it) leads only here.

* **The step.** app.core.signin raises :class:`PasskeyEnrolmentRequired` with an
  :class:`~app.models.MfaChallenge` of purpose ``passkey``: made once the code was right
  (the code is used up), it lives as long as any second step
  (app.core.mfa.STEP_LIFETIME, 10 minutes), is used once, and carries the first step's
  sign-in options and device. It replaces the person's earlier open steps. Until it is
  finished there is no session at all: leaving the page signs nobody in.
* **The ceremony** is bound to the step: its challenge (purpose ``enrol``) names the
  step (in ``session_id``, which for the other ceremonies names the session that asked)
  and the person, so creation options made for one step cannot finish another.
* **Finishing** stores the passkey (audited ``passkey.added`` and mailed, as from the
  security page), then starts the session the first step asked for. Its
  ``sign_in_method`` is ``passkey_added``: the person proved who they are with the
  emailed code (and app), and the passkey was added, not used, so the session counts
  as a code sign-in (one factor, ``amr`` otp; not in the dashboard's passkey share).
  The next sign-in is with the passkey.
* **Session limit.** The limit is checked before the challenge is claimed: in ``deny``
  mode (the sessions changed since the code, where the choice was made) the same answer
  may be sent again with ``end_session_id``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.core import mfa, passkeys, session_limit, signin
from app.core.errors import N_, InvalidCode
from app.core.events import Origin
from app.core.passkey_challenges import PasskeyRefused, RelyingParty, claim_challenge, new_challenge
from app.core.passkey_management import checked_name
from app.core.passkey_rules import PasskeyEnrolmentRequired, has_passkey
from app.crypto import Hasher
from app.models import MfaChallenge, PasskeyChallenge, Tenant, User

__all__ = ["PasskeyEnrolmentRequired", "complete", "open_enrolment", "options"]

#: the challenge purpose of the ceremony that finishes a sign-in
CEREMONY = "enrol"
#: the sign-in method of the session it starts (app.models.UserSession.sign_in_method)
METHOD = "passkey_added"

_ENDED = N_("That sign-in step has ended. Start again with a new emailed code.")


def open_enrolment(
    db: Session, step_id: Any, *, now: datetime
) -> tuple[MfaChallenge, User, Tenant]:
    """The live passkey step ``step_id`` with its person (row locked) and tenant. Raises
    InvalidCode (unknown, used or expired step; or a passkey was added meanwhile),
    InvalidSession (the account was disabled) or Forbidden (passkeys no longer allowed)."""
    step = mfa.open_step(db, step_id, signin.PASSKEY_STEP, now=now)
    user, tenant = signin.lock_account(db, step.user_id)
    passkeys.check_allowed(tenant)
    if has_passkey(db, user):  # added meanwhile elsewhere: this step is over
        raise InvalidCode(_ENDED)
    return step, user, tenant


def options(
    db: Session, rp: RelyingParty, step_id: Any, *, now: datetime
) -> tuple[PasskeyChallenge, dict[str, Any]]:
    """Creation options (WebAuthn JSON form, as the security page's) for the person's
    first passkey, bound to the step. Raises like :func:`open_enrolment`."""
    step, user, tenant = open_enrolment(db, step_id, now=now)
    row = new_challenge(
        db, rp, CEREMONY, now=now, tenant_id=tenant.id, user_id=user.id, session_id=step.id
    )
    return row, passkeys.creation_options(rp, user, row, [])


def complete(
    db: Session,
    hasher: Hasher,
    rp: RelyingParty,
    step_id: Any,
    challenge_id: Any,
    credential: Any,
    *,
    name: str | None = None,
    end_session_id: str | None = None,
    now: datetime,
    origin: Origin,
) -> signin.SignIn:
    """Store the first passkey from the browser's ``credential`` (``toJSON()`` form) and
    start the session the step's first step asked for (``second_factor``
    ``passkey_added``). Raises like :func:`open_enrolment`, and SessionLimitReached
    (deny mode: nothing used up; repeat with ``end_session_id``), ValidationError (bad
    name, or the passkey is stored already) or PasskeyRefused (a challenge of another
    step, used or expired, or a bad answer: the step stays open for a new ceremony)."""
    step, user, tenant = open_enrolment(db, step_id, now=now)
    clean_name = checked_name(name) if name is not None else None
    wanted = signin.Options.from_json(step.options)
    if end_session_id:
        wanted = replace(wanted, end_session_id=end_session_id)
    chosen = session_limit.within_limit(db, user, tenant, wanted.end_session_id, now)
    challenge = claim_challenge(db, rp, challenge_id, CEREMONY, now=now)
    if challenge.session_id != step.id or challenge.user_id != user.id:
        raise PasskeyRefused(N_("That passkey request was made for another sign-in. Try again."))
    new = passkeys.check_new(db, rp, challenge, credential)
    mfa.consume(db, step, now)
    result = signin.start_session(
        db,
        hasher,
        user,
        tenant,
        wanted,
        chosen,
        step.device_hash,
        now=now,
        origin=origin,
        method=METHOD,
    )
    passkeys.store(
        db,
        new,
        user,
        tenant,
        result.device,
        name=clean_name,
        now=now,
        origin=origin,
        session_id=result.session.id,
    )
    result.second_factor = METHOD
    return result
