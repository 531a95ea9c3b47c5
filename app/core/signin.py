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
* Signing in takes a lock on the person's row (``SELECT … FOR UPDATE`` on PostgreSQL; the
  write transaction itself on SQLite, which begins ``IMMEDIATE``) before counting live
  sessions, so parallel sign-ins cannot pass the tenant's session limit.
* ``deny`` mode refuses before the code is used up: the caller may repeat the same code
  with ``end_session_id`` naming the live session to end in exchange (and, when the
  limit was lowered below what the person holds, the answer says how many more the
  choice ends: ``also_ends``). The limit is checked again when a second step is answered.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import otp
from app.core import alerts, code_checks, events, mfa, totp
from app.core.accounts import accounts_of, normalise_email
from app.core.errors import (
    ChallengeLocked,
    InvalidCode,
    InvalidSession,
    MfaEnrolmentRequired,
    MfaRequired,
    SessionLimitReached,
    TenantChoiceRequired,
    ValidationError,
)
from app.core.events import Origin
from app.core.sessions import (
    END_MESSAGES,
    Current,
    deadlines,
    end_session,
    lifetime,
    live_sessions,
)
from app.crypto import Hasher
from app.devices import DEVICE_KINDS, describe
from app.mail import Message
from app.models import Challenge, Device, Tenant, User, UserSession
from app.outbox import queue_mail
from app.ratelimit import CodeBudgets

CODE_LIFETIME = timedelta(minutes=10)
MAX_ATTEMPTS = 5
#: the shortest session an API client may ask for with expiresIn
MIN_EXPIRES_IN = 60
#: the longest device cookie (or deviceId) taken as one
MAX_DEVICE_COOKIE = 200


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


def request_code(
    db: Session,
    hasher: Hasher,
    email: str,
    *,
    now: datetime,
    origin: Origin,
    budgets: CodeBudgets,
    product: str = "Holdfast",
    account: User | None = None,
) -> Challenge:
    """Start a sign-in: a challenge for ``email``, and (only when the address has an
    enabled account somewhere) one email with the code. With ``account`` (a fresh
    sign-in of that account's session) the code is for that account alone. Every request
    draws on the client network's budget and the normalised address's (known or not, so
    the answer never tells them apart). Raises ValidationError for a malformed address,
    RateLimited when a budget is spent."""
    budgets.spend_network(db, origin.ip, now=now)
    email = normalise_email(email)
    budgets.spend_address(db, email, now=now)
    if account is not None:
        accounts = [] if account.disabled else [account]
    else:
        accounts = accounts_of(db, email)
    # One account: the challenge names it (its tenant's audit trail shows the request).
    # None or several: it names none, and the accounts are found by address at the check.
    only = accounts[0] if len(accounts) == 1 else None
    # A new code replaces any earlier one still open for this address.
    db.execute(
        update(Challenge)
        .where(Challenge.email == email, Challenge.consumed_at.is_(None))
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    )
    code = otp.new_code()
    challenge = Challenge(
        id=f"chl_{secrets.token_urlsafe(16)}",
        email=email,
        user_id=only.id if only else None,
        tenant_id=only.tenant_id if only else None,
        created_at=now,
        expires_at=now + CODE_LIFETIME,
        ip=origin.ip,
        attempts=0,
    )
    challenge.code_hash = hasher.hash(challenge.id, code)
    db.add(challenge)
    audited_accounts: list[User | None] = [*accounts] or [None]
    for audited in audited_accounts:
        events.record(
            db,
            "code.requested",
            now=now,
            tenant_id=audited.tenant_id if audited else None,
            origin=origin,
            subject_id=audited.id if audited else None,
            challenge_id=challenge.id,
            known=audited is not None,
        )
    if accounts:
        queue_mail(
            db,
            Message(
                to=email,
                subject=f"Your {product} sign-in code",
                text=(
                    f"Your sign-in code is {code}\n\n"
                    f"It works once, for {int(CODE_LIFETIME.total_seconds() // 60)} minutes.\n"
                    f"Asked for from {origin.ip or 'an unknown address'} at "
                    f"{now:%Y-%m-%d %H:%M} UTC.\n\n"
                    "If you did not try to sign in, ignore this email: nobody can sign in "
                    "without the code.\n"
                ),
            ),
            tenant_id=accounts[0].tenant_id,
            kind="sign_in_code",
            now=now,
            give_up_at=challenge.expires_at,
        )
    db.flush()
    return challenge


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
) -> SignIn:
    """Check the emailed code and start a new session on the caller's device, or hand
    over the second step. The check draws on ``budgets`` and the address's slow-down
    (app.core.code_checks).

    Raises InvalidCode (wrong, expired, used or replaced code; the wrong try is counted),
    ChallengeLocked (too many wrong tries), ValidationError (bad options),
    TenantChoiceRequired (the address has accounts in several tenants and ``tenant_id``
    names none of them: ``details["tenants"]``; the code is not used up),
    SessionLimitReached (``deny`` mode, with the live sessions in ``details["sessions"]``;
    the code is not used up), MfaRequired or MfaEnrolmentRequired (the code was right and
    is used up; ``details["step"]`` is the second step)."""
    challenge = db.get(Challenge, challenge_id) if isinstance(challenge_id, str) else None
    if challenge is None:
        raise InvalidCode("That code has expired or was replaced. Ask for a new code.")
    accounts = _accounts_for(db, challenge)
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
    _check_code(db, hasher, challenge, code, accounts, now=now, origin=origin)
    _check_options(expires_in, device_kind)
    options = Options(
        device_name=device_name,
        device_kind=device_kind,
        trust_device=bool(trust_device),
        expires_in=expires_in,
        extend_on_activity=extend_on_activity,
        end_session_id=end_session_id,
    )
    user, tenant = _lock_account(db, _pick_account(db, accounts, tenant_id).id)
    chosen = _within_limit(db, user, tenant, options.end_session_id, now)
    _consume(db, challenge, now)
    device_hash = _device_hash(db, hasher, user, device_cookie)
    if mfa.required(user, tenant):
        enrolled = totp.is_enabled(user)
        step = mfa.new_step(
            db,
            user,
            "sign_in" if enrolled else "enrol",
            now=now,
            origin=origin,
            options=options.as_json(),
            device_hash=device_hash,
        )
        raise MfaRequired(step=step) if enrolled else MfaEnrolmentRequired(step=step)
    return _start(db, hasher, user, tenant, options, chosen, device_hash, now=now, origin=origin)


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
    nothing used up), RateLimited (a check budget spent, or the address slowed down) or
    InvalidSession (the account was disabled meanwhile)."""
    step = mfa.open_step(db, step_id, "sign_in", now=now)
    user, tenant = _lock_account(db, step.user_id)
    _before_check(db, hasher, budgets, user, device_cookie, origin=origin, now=now)
    options = Options.from_json(step.options)
    if end_session_id:
        options = replace(options, end_session_id=end_session_id)
    chosen = _within_limit(db, user, tenant, options.end_session_id, now)
    how = mfa.check_second_factor(
        db, hasher, step, user, code=code, recovery_code=recovery_code, now=now, origin=origin
    )
    mfa.consume(db, step, now)
    result = _start(
        db, hasher, user, tenant, options, chosen, step.device_hash, now=now, origin=origin
    )
    result.second_factor = how
    return result


def start_enrolment(
    db: Session, hasher: Hasher, step_id: str, *, now: datetime, origin: Origin, issuer: str
) -> totp.Enrolment:
    """The pending secret for a sign-in whose second step is adding an app (shown once).
    Raises like :func:`complete_mfa`'s opening (InvalidCode, ChallengeLocked)."""
    step = mfa.open_step(db, step_id, "enrol", now=now)
    user, _tenant = _lock_account(db, step.user_id)
    if totp.is_enabled(user):  # added meanwhile elsewhere: this step is over
        raise InvalidCode("That sign-in step has ended. Start again with a new emailed code.")
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
    user, tenant = _lock_account(db, step.user_id)
    _before_check(db, hasher, budgets, user, device_cookie, origin=origin, now=now)
    options = Options.from_json(step.options)
    if end_session_id:
        options = replace(options, end_session_id=end_session_id)
    chosen = _within_limit(db, user, tenant, options.end_session_id, now)
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
            raise ChallengeLocked("Too many wrong codes. Start again with a new emailed code.")
        raise InvalidCode(
            "That code is not right. Enter the 6-digit code your app shows now.", field="code"
        )
    totp.record_enabled(db, user, now=now, origin=origin, session_id=None, at_sign_in=True)
    codes = mfa.make_recovery_codes(db, hasher, user, now=now, origin=origin)
    mfa.consume(db, step, now)
    result = _start(
        db, hasher, user, tenant, options, chosen, step.device_hash, now=now, origin=origin
    )
    result.second_factor = "enrolled"
    return result, codes


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
) -> UserSession:
    """Confirm it is still the same person (a fresh code) without starting a new session:
    the current session's ``authenticated_at`` moves to now. For a person with an
    authenticator app the emailed code is only the first step: MfaRequired hands over a
    second step (:func:`complete_reauth`). The check draws on ``budgets`` and the
    address's slow-down like a sign-in's. Raises like sign_in."""
    challenge = db.get(Challenge, challenge_id) if isinstance(challenge_id, str) else None
    if challenge is None or challenge.user_id != current.user.id:
        raise InvalidCode("That code has expired or was replaced. Ask for a new code.")
    _before_check(db, hasher, budgets, current.user, device_cookie, origin=origin, now=now)
    _check_code(db, hasher, challenge, code, [current.user], now=now, origin=origin)
    _consume(db, challenge, now)
    if totp.is_enabled(current.user):
        step = mfa.new_step(
            db, current.user, "reauth", now=now, origin=origin, session_id=current.session.id
        )
        raise MfaRequired(step=step)
    return _mark_fresh(db, hasher, current, now=now, origin=origin)


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
        raise InvalidCode("That sign-in step has ended. Start again with a new emailed code.")
    _before_check(db, hasher, budgets, current.user, device_cookie, origin=origin, now=now)
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
    return _mark_fresh(db, hasher, current, now=now, origin=origin, second_factor=True)


def _before_check(
    db: Session,
    hasher: Hasher,
    budgets: CodeBudgets,
    user: User,
    device_cookie: str | None,
    *,
    origin: Origin,
    now: datetime,
) -> None:
    """The check rules (app.core.code_checks) for a code of ``user``'s."""
    code_checks.before_check(
        db,
        hasher,
        budgets,
        address=user.email,
        accounts=[user],
        device_cookie=device_cookie,
        origin=origin,
        now=now,
    )


def _mark_fresh(
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


def _accounts_for(db: Session, challenge: Challenge) -> list[User]:
    """The enabled accounts a challenge's code signs in to: the one it names, or (it
    names none) every enabled account of its address; none for an unknown address."""
    if challenge.user_id:
        user = db.scalars(
            select(User).where(User.id == challenge.user_id).execution_options(all_tenants=True)
        ).one_or_none()
        return [user] if user is not None and not user.disabled else []
    return accounts_of(db, challenge.email)


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
        else "Choose one of your organisations: that one is not among them.",
        tenants=tenants,
    )


def _lock_account(db: Session, user_id: str) -> tuple[User, Tenant]:
    """The person's row, locked until the transaction ends (sign-ins of one person run
    one at a time from here on), and their tenant. Raises InvalidSession when the
    account is gone or disabled."""
    user = db.scalars(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(all_tenants=True, populate_existing=True)
    ).one_or_none()
    if user is None or user.disabled:
        raise InvalidSession(END_MESSAGES["disabled"], reason="disabled")
    return user, db.get_one(Tenant, user.tenant_id)


def _within_limit(
    db: Session, user: User, tenant: Tenant, end_session_id: str | None, now: datetime
) -> UserSession | None:
    """The live session chosen to end in exchange (deny mode), if any. Raises
    SessionLimitReached when deny mode refuses the sign-in."""
    _sweep_expired(db, user, tenant, now)
    live = live_sessions(db, user.id, now)
    limit = tenant.max_sessions_per_user
    chosen = next((s for s in live if s.id == end_session_id), None) if end_session_id else None
    if limit and len(live) >= limit and tenant.limit_mode == "deny" and chosen is None:
        raise _limit_reached(db, live, limit)
    return chosen


def _start(
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
) -> SignIn:
    """Start the session (the person's row is locked, the limit checked): the device,
    trust, the session chosen or evicted to make room, the new session and its rules."""
    device, raw_cookie, new_device = _recognise_device(
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
        evicted = _evict(db, tenant, live, len(live) - limit + 1, now=now, origin=origin)

    session = _start_session(
        db,
        tenant,
        user,
        device,
        now=now,
        origin=origin,
        expires_in=options.expires_in,
        extend_on_activity=options.extend_on_activity,
    )
    user.last_sign_in_at = now
    code_checks.right_code(db, hasher, user.email)  # the address's run of wrong codes ends
    device.last_seen_at = now
    for old in evicted:
        _mail_evicted(db, user, old, device, now)
    db.flush()
    result = SignIn(session, device, user, tenant, raw_cookie, new_device, evicted, chosen)
    alerts.after_sign_in(db, hasher, result, now=now, origin=origin)  # security rules
    return result


def _device_hash(db: Session, hasher: Hasher, user: User, raw_cookie: str | None) -> str | None:
    """The keyed hash, under the current secret key, a device of ``user`` with this
    cookie (or deviceId) is stored under; None when there is no usable cookie (a new one
    is made). A device stored under a fallback key (HOLDFAST_SECRET_KEY_FALLBACKS) is
    stored under the current key from now on, so a second step can find it by this hash."""
    if not raw_cookie or not isinstance(raw_cookie, str) or len(raw_cookie) > MAX_DEVICE_COOKIE:
        return None
    current, *older = hasher.candidates("device", user.id, raw_cookie)
    if older:
        db.execute(
            update(Device)
            .where(Device.user_id == user.id, Device.cookie_hash.in_(older))
            .values(cookie_hash=current)
            .execution_options(synchronize_session=False, all_tenants=True)
        )
    return current


def _limit_reached(db: Session, live: list[UserSession], limit: int) -> SessionLimitReached:
    """deny mode's refusal: the live sessions to choose from, and how many more than the
    chosen one a choice ends. When the limit was lowered below what the person holds
    (9 sessions, limit 2), signing in must end 8: the chosen one and the 7 least
    recently active of the others (untrusted devices first, as evict_oldest picks), and
    the answer says so (``also_ends``) before anything ends."""
    also_ends = len(live) - limit
    if also_ends:
        message = (
            f"You have {len(live)} active sessions and your organisation now allows "
            f"{limit}. Choose one to end: ending it also ends your {also_ends} least "
            f"recently active other session{'s' if also_ends != 1 else ''} (untrusted "
            "devices first), so that you are within the limit after signing in here."
        )
    else:
        message = (
            f"You already have {len(live)} active sessions, the most your organisation "
            "allows. End one of them to sign in here."
        )
    return SessionLimitReached(
        message,
        sessions=live,
        also_ends=also_ends,
        devices={
            d.id: d
            for d in db.scalars(select(Device).where(Device.id.in_({s.device_id for s in live})))
        },
    )


def _consume(db: Session, challenge: Challenge, now: datetime) -> None:
    """Use the code up, atomically: of parallel submissions exactly one gets here."""
    consumed = db.execute(
        update(Challenge)
        .where(
            Challenge.id == challenge.id,
            Challenge.consumed_at.is_(None),
            Challenge.attempts < MAX_ATTEMPTS,
        )
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if consumed != 1:
        raise InvalidCode("That code was used already. Ask for a new code.")


def _check_code(
    db: Session,
    hasher: Hasher,
    challenge: Challenge,
    code: str,
    accounts: list[User],
    *,
    now: datetime,
    origin: Origin,
) -> None:
    """Accept the emailed code of ``challenge`` for ``accounts`` (its enabled accounts:
    none for an unknown address, whose code never matches). A wrong code is claimed
    against the challenge, audited as ``code.failed`` in each account's tenant and
    counted for each account's wrong-code rules (app.core.alerts). Raises InvalidCode or
    ChallengeLocked."""
    if challenge.consumed_at is not None:
        raise InvalidCode("That code was used already or replaced. Ask for a new code.")
    if challenge.attempts >= MAX_ATTEMPTS:
        raise ChallengeLocked()
    if now >= challenge.expires_at:
        raise InvalidCode("That code has expired. Ask for a new code.")
    digits = otp.normalise_code(code if isinstance(code, str) else "")
    if (
        accounts
        and len(digits) == otp.CODE_DIGITS
        and hasher.matches(challenge.code_hash, challenge.id, digits)
    ):
        return
    attempts = _claim_attempt(db, challenge)
    audited: list[User | None] = [*accounts] or [None]
    for account in audited:
        events.record(
            db,
            "code.failed",
            now=now,
            tenant_id=account.tenant_id if account else challenge.tenant_id,
            origin=origin,
            subject_id=account.id if account else challenge.user_id,
            challenge_id=challenge.id,
            attempts=attempts,
        )
    db.flush()
    code_checks.wrong_code(
        db, hasher, address=challenge.email, accounts=accounts, now=now, origin=origin
    )
    if attempts >= MAX_ATTEMPTS:
        raise ChallengeLocked()
    left = MAX_ATTEMPTS - attempts
    raise InvalidCode(
        f"That code is not right. {left} {'try' if left == 1 else 'tries'} left.",
        attempts_left=left,
    )


def _claim_attempt(db: Session, challenge: Challenge) -> int:
    """Count one wrong try against the challenge and return how many there have been,
    atomically: one conditional ``UPDATE … SET attempts = attempts + 1 WHERE attempts <
    MAX_ATTEMPTS … RETURNING attempts``. Parallel wrong codes queue on the row (PostgreSQL
    re-checks the condition on the row as the previous writer left it; SQLite's writes
    run one at a time), so exactly MAX_ATTEMPTS are ever counted. Raises ChallengeLocked
    for a try past the limit, InvalidCode when the code was used meanwhile (neither is
    counted)."""
    counted = db.execute(
        update(Challenge)
        .where(
            Challenge.id == challenge.id,
            Challenge.attempts < MAX_ATTEMPTS,
            Challenge.consumed_at.is_(None),
        )
        .values(attempts=Challenge.attempts + 1)
        .returning(Challenge.attempts)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if counted is None:
        used = db.scalar(select(Challenge.consumed_at).where(Challenge.id == challenge.id))
        if used is not None:
            raise InvalidCode("That code was used already or replaced. Ask for a new code.")
        raise ChallengeLocked()
    return int(counted)


def _check_options(expires_in: int | None, device_kind: str | None) -> None:
    if expires_in is not None and (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or expires_in < MIN_EXPIRES_IN
    ):
        raise ValidationError(
            f"expiresIn is a whole number of seconds, at least {MIN_EXPIRES_IN}.",
            field="expiresIn",
        )
    if device_kind is not None and device_kind not in DEVICE_KINDS:
        raise ValidationError(
            f"deviceType is one of {', '.join(DEVICE_KINDS)}.", field="deviceType"
        )


def _sweep_expired(db: Session, user: User, tenant: Tenant, now: datetime) -> None:
    """Mark the person's sessions that are over as ended, by the policy in force now (a
    tightened policy included), so counts and lists never include a session that is in
    fact over."""
    rows = db.execute(
        select(UserSession, Device)
        .join(Device, Device.id == UserSession.device_id)
        .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
    ).all()
    for session, device in rows:
        idle, absolute = deadlines(session, tenant, device, now)
        if now >= absolute:
            end_session(db, session, "lifetime_expired", now=now)
        elif now >= idle:
            end_session(db, session, "idle_expired", now=now)


def _recognise_device(
    db: Session,
    hasher: Hasher,
    user: User,
    cookie_hash: str | None,
    *,
    origin: Origin,
    now: datetime,
    name: str | None,
    kind: str | None,
) -> tuple[Device, str | None, bool]:
    """The person's device stored under ``cookie_hash`` (:func:`_device_hash`: bound to
    this person only), a new one under it, or (no cookie) a new one with a fresh cookie
    value to hand out (returned)."""
    device = None
    new_cookie = None
    if cookie_hash is not None:
        device = db.scalars(
            select(Device)
            .where(Device.user_id == user.id, Device.cookie_hash == cookie_hash)
            .execution_options(all_tenants=True)
        ).one_or_none()
    info = describe(origin.user_agent)
    new_device = device is None
    if device is None:
        if cookie_hash is None:
            new_cookie = secrets.token_urlsafe(32)
            cookie_hash = hasher.hash("device", user.id, new_cookie)
        device = Device(
            tenant_id=user.tenant_id,
            user_id=user.id,
            cookie_hash=cookie_hash,
            first_seen_at=now,
            last_seen_at=now,
        )
        db.add(device)
    device.kind = kind or info.kind
    device.os = info.os
    device.browser = info.browser
    if name is not None:
        clean = " ".join(str(name).split())[:60]
        device.name = clean or None
    db.flush()
    return device, new_cookie, new_device


def _evict(
    db: Session,
    tenant: Tenant,
    live: list[UserSession],
    count: int,
    *,
    now: datetime,
    origin: Origin,
) -> list[UserSession]:
    """End the ``count`` least recently active sessions, untrusted devices first."""
    devices = {
        d.id: d
        for d in db.scalars(select(Device).where(Device.id.in_({s.device_id for s in live})))
    }
    order = sorted(live, key=lambda s: (devices[s.device_id].is_trusted(now), s.last_seen_at))
    evicted = order[:count]
    for session in evicted:
        end_session(db, session, "limit_evicted", now=now, origin=origin)
    return evicted


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
        idle_deadline=min(now + timedelta(seconds=tenant.idle_timeout), absolute),
        absolute_deadline=absolute,
        extend_on_activity=(
            tenant.extend_on_activity if extend_on_activity is None else extend_on_activity
        ),
        ip=origin.ip[:45],
        user_agent=origin.user_agent[:512],
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
    )
    return session


def _mail_evicted(
    db: Session, user: User, old: UserSession, new_device: Device, now: datetime
) -> None:
    queue_mail(
        db,
        Message(
            to=user.email,
            subject="You were signed out on another device",
            text=(
                f"{END_MESSAGES['limit_evicted']}\n\n"
                f"At {now:%Y-%m-%d %H:%M} UTC you signed in on {new_device.display_name}, "
                f"which took the place of your oldest session (signed in at "
                f"{old.created_at:%Y-%m-%d %H:%M} UTC from {old.ip or 'an unknown address'}).\n"
                "If this was not you, sign in and end the sessions you do not recognise.\n"
            ),
        ),
        tenant_id=user.tenant_id,
        kind="session_evicted",
        now=now,
    )
