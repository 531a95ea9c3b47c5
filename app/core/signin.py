"""Sign-in with a one-time code sent by email, a second factor where one is needed, and
the session it starts.

* A code is 6 random digits, stored only as a keyed hash, valid for 10 minutes, usable
  once, dead after 5 wrong tries (each wrong try is claimed with one conditional UPDATE,
  so parallel guesses never get more); asking again replaces the earlier code.
* The code goes to an address, once, however many organisations the address has an
  account in. Unknown (or disabled) addresses get a challenge too, whose code is never
  sent, so no answer tells a caller whether an account exists.
* **Several organisations.** An address may have an account in several tenants (one
  ``users`` row each, app.core.accounts). When the right code is entered for such an
  address, the caller is asked which organisation (:class:`TenantChoiceRequired`, with
  the address's tenants) and repeats the same code with ``tenant_id``; the code is not
  used up until then, as in deny mode. Everything after that belongs to that one account:
  its session limit, its devices (the same browser is one device per account), its
  second factor, its slow-down after wrong codes. (Slack and GitHub work the same way:
  one sign-in, then pick a workspace or organisation.)
* **A second factor** (app.core.mfa) for those who need one: once the code is right (and
  used up), :class:`MfaRequired` hands over a second step to answer with the app's code or
  a recovery code (:func:`complete_mfa`); an admin whose tenant requires an app and who
  has none gets :class:`MfaEnrolmentRequired` and adds one (:func:`start_enrolment`,
  :func:`complete_enrolment`). The session starts only when that step is answered.
* **Required passkeys** (app.core.passkey_rules): a person who has none gets
  :class:`PasskeyEnrolmentRequired` instead of a session (after the app's code, for a
  person with an app), and app.core.passkey_enrolment finishes the sign-in once their
  first passkey is stored.
* Signing in takes a lock on the person's row (``SELECT … FOR UPDATE`` on PostgreSQL; the
  write transaction itself on SQLite, which begins ``IMMEDIATE``) before counting live
  sessions, so parallel sign-ins cannot pass the tenant's session limit.
* ``deny`` mode refuses before the code is used up: the caller may repeat the same code
  with ``end_session_id`` naming the live session to end in exchange (and, when the
  limit was lowered below what the person holds, the answer says how many more the
  choice ends: ``also_ends``). The limit is checked again when a second step is answered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import (
    code_checks,
    codes,
    devices,
    events,
    mfa,
    passkey_rules,
    session_limit,
    sign_in_rules,
    totp,
)
from app.core.budgets import CodeBudgets
from app.core.errors import (
    N_,
    ChallengeLocked,
    InvalidCode,
    InvalidSession,
    MfaEnrolmentRequired,
    MfaRequired,
    TenantChoiceRequired,
    ValidationError,
)
from app.core.events import Origin
from app.core.passkey_rules import PasskeyEnrolmentRequired
from app.core.sessions import (
    END_MESSAGES,
    end_session,
    idle_timeout,
    lifetime,
    live_sessions,
)
from app.crypto import Hasher
from app.models import Challenge, Device, Tenant, User, UserSession
from app.user_agents import DEVICE_KINDS

#: the shortest session an API client may ask for with expiresIn
MIN_EXPIRES_IN = 60
#: what the second step asks for when only a recovery code is accepted (require_passkeys,
#: a person with a passkey and an app: the app's code would bypass the passkey)
RECOVERY_ONLY = N_(
    "Your organisation requires passkeys: enter one of your recovery codes to finish "
    "signing in, or sign in with your passkey."
)
#: the purpose of the step whose only way on is adding a first passkey
#: (app.core.passkey_enrolment)
PASSKEY_STEP = "passkey"


@dataclass
class SignIn:
    session: UserSession
    device: Device
    user: User
    tenant: Tenant
    #: a new raw device cookie to hand to the browser (None: it already has one)
    device_cookie: str | None
    new_device: bool
    evicted: list[UserSession] = field(default_factory=list)
    #: deny mode: the session the person chose to end in exchange for this one
    replaced: UserSession | None = None
    #: how the second factor was given: None (not needed), totp, recovery_code, enrolled
    second_factor: str | None = None


@dataclass(frozen=True)
class Options:
    """What the caller asked of the session a sign-in starts; kept on a second step
    (app.models.MfaChallenge.options) so the session it starts is the one asked for."""

    device_name: str | None = None
    device_kind: str | None = None
    trust_device: bool = False
    expires_in: int | None = None
    extend_on_activity: bool | None = None
    end_session_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The options asked for (None: not asked; extendOnActivity false is asked)."""
        stored = {name: value for name, value in asdict(self).items() if value is not None}
        if not self.trust_device:
            del stored["trust_device"]
        return stored

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> Options:
        known = cls.__dataclass_fields__
        return cls(**{name: value for name, value in (stored or {}).items() if name in known})


def sign_in(
    db: Session,
    hasher: Hasher,
    challenge_id: str,
    code: str,
    *,
    now: datetime,
    origin: Origin,
    device_cookie: str | None = None,
    device_name: str | None = None,
    device_kind: str | None = None,
    trust_device: bool = False,
    expires_in: int | None = None,
    extend_on_activity: bool | None = None,
    end_session_id: str | None = None,
    tenant_id: str | None = None,
    budgets: CodeBudgets,
    link_secret: str | None = None,
) -> SignIn:
    """Check the emailed code and start a new session on the caller's device, or hand
    over the second step. The check draws on ``budgets`` and the address's slow-down
    (app.core.code_checks). With ``link_secret`` the mail's sign-in link stands in for
    the code (app.core.sign_in_links checks the browser first).

    Raises InvalidCode (wrong, expired, used or replaced code; the wrong try is counted),
    ChallengeLocked (too many wrong tries), ValidationError (bad options, or input
    that cannot be a code: nothing counted),
    TenantChoiceRequired (the address has accounts in several tenants and ``tenant_id``
    names none of them: ``details["tenants"]``; the code is not used up),
    SessionLimitReached (``deny`` mode, with the live sessions in ``details["sessions"]``;
    the code is not used up), MfaRequired, MfaEnrolmentRequired or PasskeyEnrolmentRequired
    (the code was right and is used up; ``details["step"]`` is the second step), or
    PasskeyRequired (the tenant wants this person's passkey; nothing used up)."""
    challenge = db.get(Challenge, challenge_id) if isinstance(challenge_id, str) else None
    if challenge is None:
        raise InvalidCode(N_("That code has expired or was replaced. Ask for a new code."))
    if link_secret is None:  # a link carries no typed code (it is checked below)
        codes.require_code_shape(code)  # a typing slip costs no try and no budget
    accounts = codes.accounts_for(db, challenge)
    code_checks.before_check(
        db,
        hasher,
        budgets,
        address=challenge.email,
        accounts=accounts,
        device_cookie=device_cookie,
        origin=origin,
        now=now,
    )
    if link_secret is None:
        codes.check_code(db, hasher, challenge, code, accounts, now=now, origin=origin)
    else:
        codes.check_link(hasher, challenge, link_secret, accounts, now=now)
    _check_options(expires_in, device_kind)
    options = Options(
        device_name=device_name,
        device_kind=device_kind,
        trust_device=bool(trust_device),
        expires_in=expires_in,
        extend_on_activity=extend_on_activity,
        end_session_id=end_session_id,
    )
    user, tenant = lock_account(db, _pick_account(db, accounts, tenant_id).id)
    chosen = session_limit.within_limit(db, user, tenant, options.end_session_id, now)
    # The passkey policy may refuse the code (PasskeyRequired, nothing used up) or leave
    # it only the way to a recovery code, or to adding a first passkey.
    enrolled = totp.is_enabled(user)
    rule = passkey_rules.check_code_sign_in(db, user, tenant, has_app=enrolled)
    recovery_only = rule == passkey_rules.RECOVERY_ONLY
    codes.consume(db, challenge, now)
    device_hash = devices.device_hash(db, hasher, user, device_cookie)
    if rule == passkey_rules.ENROL_PASSKEY and not enrolled:
        # (a person with an app answers its code first: complete_mfa goes on to this)
        step = mfa.new_step(
            db,
            user,
            PASSKEY_STEP,
            now=now,
            origin=origin,
            options=options.as_json(),
            device_hash=device_hash,
        )
        raise PasskeyEnrolmentRequired(step=step)
    if mfa.required(user, tenant) or recovery_only:
        step = mfa.new_step(
            db,
            user,
            "sign_in" if enrolled else "enrol",
            now=now,
            origin=origin,
            options={**options.as_json(), **({"recovery_only": True} if recovery_only else {})},
            device_hash=device_hash,
        )
        if not enrolled:
            raise MfaEnrolmentRequired(step=step)
        raise MfaRequired(RECOVERY_ONLY if recovery_only else None, step=step)
    return start_session(
        db,
        hasher,
        user,
        tenant,
        options,
        chosen,
        device_hash,
        now=now,
        origin=origin,
        method="code" if link_secret is None else "link",
    )


def complete_mfa(
    db: Session,
    hasher: Hasher,
    step_id: str,
    *,
    code: str | None = None,
    recovery_code: str | None = None,
    now: datetime,
    origin: Origin,
    device_cookie: str | None = None,
    end_session_id: str | None = None,
    budgets: CodeBudgets,
) -> SignIn:
    """Answer a sign-in's second step with the app's code or a recovery code and start
    the session the first step asked for. ``end_session_id`` replaces the first step's
    choice (deny mode, when the live sessions changed in between); ``device_cookie`` is
    only for the slow-down's trusted-device exemption.

    Raises InvalidCode (wrong code, counted; or the step is unknown, used or expired),
    ChallengeLocked (too many wrong codes: sign in again), SessionLimitReached (deny mode,
    nothing used up), RateLimited (a check budget spent, or the address slowed down),
    InvalidSession (the account was disabled meanwhile) or PasskeyEnrolmentRequired (the
    tenant requires passkeys and the person has none: the code was right, the step is
    used up and the next one is adding a passkey)."""
    step = mfa.open_step(db, step_id, "sign_in", now=now)
    user, tenant = lock_account(db, step.user_id)
    code_checks.check_for_person(db, hasher, budgets, user, device_cookie, origin=origin, now=now)
    options = Options.from_json(step.options)
    if end_session_id:
        options = replace(options, end_session_id=end_session_id)
    chosen = session_limit.within_limit(db, user, tenant, options.end_session_id, now)
    if step.options.get("recovery_only") and recovery_code is None:
        raise InvalidCode(
            N_(
                "Your organisation requires passkeys: sign in with your passkey, or enter one "
                "of your recovery codes here."
            )
        )
    how = mfa.check_second_factor(
        db, hasher, step, user, code=code, recovery_code=recovery_code, now=now, origin=origin
    )
    mfa.consume(db, step, now)
    if passkey_rules.must_enrol(db, user, tenant):
        # require_passkeys and none yet: the app's code leads only to adding one.
        passkey_step = mfa.new_step(
            db,
            user,
            PASSKEY_STEP,
            now=now,
            origin=origin,
            options=options.as_json(),
            device_hash=step.device_hash,
        )
        raise PasskeyEnrolmentRequired(step=passkey_step)
    result = start_session(
        db,
        hasher,
        user,
        tenant,
        options,
        chosen,
        step.device_hash,
        now=now,
        origin=origin,
        method="app" if how == "totp" else "recovery",
    )
    result.second_factor = how
    return result


def start_enrolment(
    db: Session, hasher: Hasher, step_id: str, *, now: datetime, origin: Origin, issuer: str
) -> totp.Enrolment:
    """The pending secret for a sign-in whose second step is adding an app (shown once).
    Raises like :func:`complete_mfa`'s opening (InvalidCode, ChallengeLocked)."""
    step = mfa.open_step(db, step_id, "enrol", now=now)
    user, _tenant = lock_account(db, step.user_id)
    if totp.is_enabled(user):  # added meanwhile elsewhere: this step is over
        raise InvalidCode(N_("That sign-in step has ended. Start again with a new emailed code."))
    return totp.begin(db, hasher, user, now=now, origin=origin, session_id=None, issuer=issuer)


def complete_enrolment(
    db: Session,
    hasher: Hasher,
    step_id: str,
    code: str,
    *,
    now: datetime,
    origin: Origin,
    end_session_id: str | None = None,
    device_cookie: str | None = None,
    budgets: CodeBudgets,
) -> tuple[SignIn, list[str]]:
    """Finish a sign-in whose second step is adding an app: enable the pending app when
    ``code`` is its code for now, make the person's recovery codes and start the session.
    Returns (the sign-in, the recovery codes to show once). Raises like
    :func:`complete_mfa`, and ValidationError when no app is being added."""
    step = mfa.open_step(db, step_id, "enrol", now=now)
    user, tenant = lock_account(db, step.user_id)
    code_checks.check_for_person(db, hasher, budgets, user, device_cookie, origin=origin, now=now)
    options = Options.from_json(step.options)
    if end_session_id:
        options = replace(options, end_session_id=end_session_id)
    chosen = session_limit.within_limit(db, user, tenant, options.end_session_id, now)
    if not totp.enable(db, hasher, user, code, now=now):
        attempts = mfa.claim_attempt(db, step)
        events.record(
            db,
            "mfa.failed",
            now=now,
            tenant_id=user.tenant_id,
            origin=origin,
            subject_id=user.id,
            purpose="enrol",
            attempts=attempts,
        )
        db.flush()
        code_checks.wrong_code(
            db, hasher, address=user.email, accounts=[user], now=now, origin=origin
        )
        if attempts >= mfa.MAX_ATTEMPTS:
            raise ChallengeLocked(N_("Too many wrong codes. Start again with a new emailed code."))
        raise InvalidCode(
            N_("That code is not right. Enter the 6-digit code your app shows now."), field="code"
        )
    totp.record_enabled(db, user, now=now, origin=origin, session_id=None, at_sign_in=True)
    codes = mfa.make_recovery_codes(db, hasher, user, now=now, origin=origin)
    mfa.consume(db, step, now)
    result = start_session(
        db,
        hasher,
        user,
        tenant,
        options,
        chosen,
        step.device_hash,
        now=now,
        origin=origin,
        method="app",
    )
    result.second_factor = "enrolled"
    return result, codes


def start_without_code(
    db: Session,
    hasher: Hasher,
    user_id: str,
    options: Options,
    *,
    method: str,
    device_cookie: str | None,
    now: datetime,
    origin: Origin,
) -> SignIn:
    """Start a session for a person who proved who they are another way (a passkey, a
    sign-in link: ``method``), with no second step: the rest is as a code sign-in's (the
    person's row locked, the session limit, the device, the security rules). Raises
    InvalidSession (account gone or disabled), ValidationError (bad options) or
    SessionLimitReached (deny mode)."""
    _check_options(options.expires_in, options.device_kind)
    user, tenant = lock_account(db, user_id)
    chosen = session_limit.within_limit(db, user, tenant, options.end_session_id, now)
    device_hash = devices.device_hash(db, hasher, user, device_cookie)
    return start_session(
        db,
        hasher,
        user,
        tenant,
        options,
        chosen,
        device_hash,
        now=now,
        origin=origin,
        method=method,
    )


def _pick_account(db: Session, accounts: list[User], tenant_id: str | None) -> User:
    """The account to sign in to: the only one, or the one in ``tenant_id``. Raises
    TenantChoiceRequired listing the tenants when the caller has to choose."""
    if len(accounts) == 1 and tenant_id in (None, accounts[0].tenant_id):
        return accounts[0]
    chosen = next((a for a in accounts if a.tenant_id == tenant_id), None)
    if chosen is not None:
        return chosen
    tenants = list(db.scalars(select(Tenant).where(Tenant.id.in_([a.tenant_id for a in accounts]))))
    tenants.sort(key=lambda t: (t.name.lower(), t.slug))
    raise TenantChoiceRequired(
        None
        if tenant_id is None
        else N_("Choose one of your organisations: that one is not among them."),
        tenants=tenants,
    )


def lock_account(db: Session, user_id: str) -> tuple[User, Tenant]:
    """The person's row, locked until the transaction ends (sign-ins of one person run
    one at a time from here on), and their tenant (a second step finished in another
    module locks it here too). Raises InvalidSession when the account is gone or
    disabled."""
    user = db.scalars(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(all_tenants=True, populate_existing=True)
    ).one_or_none()
    if user is None or user.disabled:
        raise InvalidSession(END_MESSAGES["disabled"], reason="disabled")
    return user, db.get_one(Tenant, user.tenant_id)


def start_session(
    db: Session,
    hasher: Hasher,
    user: User,
    tenant: Tenant,
    options: Options,
    chosen: UserSession | None,
    device_hash: str | None,
    *,
    now: datetime,
    origin: Origin,
    method: str,
) -> SignIn:
    """Start the session (the person's row locked by :func:`lock_account`, the limit
    checked: ``chosen`` from session_limit.within_limit), for this module's steps and for
    second steps finished elsewhere (passkeys, passkey enrolment): the device, trust, the
    session chosen or evicted to make room, the new session and its rules."""
    device, raw_cookie, new_device = devices.recognise_device(
        db,
        hasher,
        user,
        device_hash,
        origin=origin,
        now=now,
        name=options.device_name,
        kind=options.device_kind,
    )
    if options.trust_device:
        device.trusted_until = now + timedelta(seconds=tenant.trusted_lifetime)
        events.record(
            db,
            "device.trusted",
            now=now,
            tenant_id=tenant.id,
            origin=origin,
            actor_id=user.id,
            subject_id=user.id,
            device_id=device.id,
            until=device.trusted_until.isoformat(),
        )

    live = live_sessions(db, user.id, now)
    limit = tenant.max_sessions_per_user
    evicted: list[UserSession] = []
    if chosen is not None:
        end_session(db, chosen, "revoked_by_user", now=now, actor_id=user.id, origin=origin)
        live = [s for s in live if s.id != chosen.id]
    if limit and len(live) >= limit:
        evicted = session_limit.evict(
            db, tenant, live, len(live) - limit + 1, now=now, origin=origin
        )

    session = _start_session(
        db,
        tenant,
        user,
        device,
        now=now,
        origin=origin,
        expires_in=options.expires_in,
        extend_on_activity=options.extend_on_activity,
        method=method,
    )
    user.last_sign_in_at = now
    code_checks.right_code(db, hasher, user.email)  # the address's run of wrong codes ends
    device.last_seen_at = now
    for old in evicted:
        session_limit.mail_evicted(db, user, old, device, now)
    db.flush()
    result = SignIn(session, device, user, tenant, raw_cookie, new_device, evicted, chosen)
    sign_in_rules.after_sign_in(db, hasher, result, now=now, origin=origin)  # security rules
    return result


def _check_options(expires_in: int | None, device_kind: str | None) -> None:
    if expires_in is not None and (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or expires_in < MIN_EXPIRES_IN
    ):
        raise ValidationError(
            N_("expiresIn is a whole number of seconds, at least %(min)s."),
            words={"min": MIN_EXPIRES_IN},
            field="expiresIn",
        )
    if device_kind is not None and device_kind not in DEVICE_KINDS:
        raise ValidationError(
            N_("deviceType is one of %(kinds)s."),
            words={"kinds": ", ".join(DEVICE_KINDS)},
            field="deviceType",
        )


def _start_session(
    db: Session,
    tenant: Tenant,
    user: User,
    device: Device,
    *,
    now: datetime,
    origin: Origin,
    expires_in: int | None,
    extend_on_activity: bool | None,
    method: str,
) -> UserSession:
    span = lifetime(tenant, device, now)
    if expires_in is not None:
        span = min(span, timedelta(seconds=expires_in))
    absolute = now + span
    session = UserSession(
        tenant_id=tenant.id,
        user_id=user.id,
        device_id=device.id,
        created_at=now,
        authenticated_at=now,
        last_seen_at=now,
        idle_deadline=min(now + idle_timeout(tenant, device, now), absolute),
        absolute_deadline=absolute,
        extend_on_activity=(
            tenant.extend_on_activity if extend_on_activity is None else extend_on_activity
        ),
        ip=origin.ip[:45],
        user_agent=origin.user_agent[:512],
        sign_in_method=method,
    )
    db.add(session)
    db.flush()
    events.record(
        db,
        "session.created",
        now=now,
        tenant_id=tenant.id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        session_id=session.id,
        device_id=device.id,
        expires_at=absolute.isoformat(),
        method=method,
    )
    return session
