"""Sign-in with a one-time code sent by email, and the session it starts.

* A code is 6 random digits, stored only as a keyed hash, valid for 10 minutes, usable
  once, dead after 5 wrong tries (each wrong try is claimed with one conditional UPDATE,
  so parallel guesses never get more); asking again replaces the earlier code.
* Unknown (or disabled) emails get a challenge too, whose code is never sent, so no
  answer tells a caller whether an account exists.
* Signing in takes a lock on the person's row (``SELECT … FOR UPDATE`` on PostgreSQL; the
  write transaction itself on SQLite, which begins ``IMMEDIATE``) before counting live
  sessions, so parallel sign-ins cannot pass the tenant's session limit.
* ``deny`` mode refuses before the code is used up: the caller may repeat the same code
  with ``end_session_id`` naming the live session to end in exchange (and, when the
  limit was lowered below what the person holds, the answer says how many more the
  choice ends: ``also_ends``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import otp
from app.core import alerts, events, totp
from app.core.accounts import find_user_by_email, normalise_email
from app.core.errors import ChallengeLocked, InvalidCode, SessionLimitReached, ValidationError
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
from app.db import queue_mail
from app.devices import DEVICE_KINDS, describe
from app.mail import Message
from app.models import Challenge, Device, Tenant, User, UserSession

CODE_LIFETIME = timedelta(minutes=10)
MAX_ATTEMPTS = 5
#: the shortest session an API client may ask for with expiresIn
MIN_EXPIRES_IN = 60


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


def request_code(
    db: Session,
    hasher: Hasher,
    email: str,
    *,
    now: datetime,
    origin: Origin,
    product: str = "Holdfast",
) -> Challenge:
    """Start a sign-in: a challenge for ``email``, and (only for a real, enabled account)
    an email with the code. Raises ValidationError for a malformed address."""
    email = normalise_email(email)
    user = find_user_by_email(db, email)
    if user is not None and user.disabled:
        user = None
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
        user_id=user.id if user else None,
        tenant_id=user.tenant_id if user else None,
        created_at=now,
        expires_at=now + CODE_LIFETIME,
        ip=origin.ip,
        attempts=0,
    )
    challenge.code_hash = hasher.hash(challenge.id, code)
    db.add(challenge)
    events.record(
        db,
        "code.requested",
        now=now,
        tenant_id=challenge.tenant_id,
        origin=origin,
        subject_id=challenge.user_id,
        challenge_id=challenge.id,
        known=user is not None,
    )
    if user is not None:
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
) -> SignIn:
    """Check the code and start a new session on the caller's device.

    Raises InvalidCode (wrong, expired, used or replaced code; the wrong try is counted),
    ChallengeLocked (too many wrong tries), SessionLimitReached (``deny`` mode, with the
    live sessions in ``details["sessions"]``) or ValidationError (bad options)."""
    challenge = db.get(Challenge, challenge_id) if isinstance(challenge_id, str) else None
    if challenge is None:
        raise InvalidCode("That code has expired or was replaced. Ask for a new code.")
    alerts.refuse_if_slowed(db, hasher, challenge.user_id, device_cookie, now=now)
    user = _check_code(db, hasher, challenge, code, now=now, origin=origin)
    _check_options(expires_in, device_kind)

    # Lock the person's row: sign-ins of one person run one at a time from here on.
    user = db.scalars(
        select(User)
        .where(User.id == user.id)
        .with_for_update()
        .execution_options(all_tenants=True, populate_existing=True)
    ).one()
    tenant = db.get_one(Tenant, user.tenant_id)
    _sweep_expired(db, user, tenant, now)
    live = live_sessions(db, user.id, now)
    limit = tenant.max_sessions_per_user
    chosen = next((s for s in live if s.id == end_session_id), None) if end_session_id else None
    if limit and len(live) >= limit and tenant.limit_mode == "deny" and chosen is None:
        raise _limit_reached(db, live, limit)

    _consume(db, challenge, now)

    device, raw_cookie, new_device = _recognise_device(
        db,
        hasher,
        user,
        device_cookie,
        origin=origin,
        now=now,
        name=device_name,
        kind=device_kind,
    )
    if trust_device:
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

    evicted: list[UserSession] = []
    if chosen is not None:
        end_session(db, chosen, "revoked_by_user", now=now, actor_id=user.id, origin=origin)
        live.remove(chosen)
    if limit and len(live) >= limit:
        evicted = _evict(db, tenant, live, len(live) - limit + 1, now=now, origin=origin)

    session = _start_session(
        db,
        tenant,
        user,
        device,
        now=now,
        origin=origin,
        expires_in=expires_in,
        extend_on_activity=extend_on_activity,
    )
    user.last_sign_in_at = now
    device.last_seen_at = now
    for old in evicted:
        _mail_evicted(db, user, old, device, now)
    db.flush()
    result = SignIn(session, device, user, tenant, raw_cookie, new_device, evicted, chosen)
    alerts.after_sign_in(db, hasher, result, now=now, origin=origin)  # security rules
    return result


def reauthenticate(
    db: Session,
    hasher: Hasher,
    current: Current,
    challenge_id: str,
    code: str,
    *,
    now: datetime,
    origin: Origin,
) -> UserSession:
    """Confirm it is still the same person (a fresh code) without starting a new session:
    the current session's ``authenticated_at`` moves to now. Raises like sign_in."""
    challenge = db.get(Challenge, challenge_id) if isinstance(challenge_id, str) else None
    if challenge is None or challenge.user_id != current.user.id:
        raise InvalidCode("That code has expired or was replaced. Ask for a new code.")
    _check_code(db, hasher, challenge, code, now=now, origin=origin)
    _consume(db, challenge, now)
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
    )
    db.flush()
    return current.session


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
    *,
    now: datetime,
    origin: Origin,
) -> User:
    if challenge.consumed_at is not None:
        raise InvalidCode("That code was used already or replaced. Ask for a new code.")
    if challenge.attempts >= MAX_ATTEMPTS:
        raise ChallengeLocked()
    if now >= challenge.expires_at:
        raise InvalidCode("That code has expired. Ask for a new code.")
    digits = otp.normalise_code(code if isinstance(code, str) else "")
    user = (
        db.scalars(
            select(User).where(User.id == challenge.user_id).execution_options(all_tenants=True)
        ).one_or_none()
        if challenge.user_id
        else None
    )
    if (
        user is None
        or user.disabled
        or not (
            (
                len(digits) == otp.CODE_DIGITS
                and hasher.matches(challenge.code_hash, challenge.id, digits)
            )
            # the person's authenticator app code works in the same field
            or totp.verify(db, hasher, user, digits, now=now, origin=origin)
        )
    ):
        attempts = _claim_attempt(db, challenge)
        events.record(
            db,
            "code.failed",
            now=now,
            tenant_id=challenge.tenant_id,
            origin=origin,
            subject_id=challenge.user_id,
            challenge_id=challenge.id,
            attempts=attempts,
        )
        db.flush()
        if challenge.user_id:
            alerts.code_failed(db, challenge.user_id, now=now, origin=origin)
        if attempts >= MAX_ATTEMPTS:
            raise ChallengeLocked()
        left = MAX_ATTEMPTS - attempts
        raise InvalidCode(
            f"That code is not right. {left} {'try' if left == 1 else 'tries'} left.",
            attempts_left=left,
        )
    return user


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
    raw_cookie: str | None,
    *,
    origin: Origin,
    now: datetime,
    name: str | None,
    kind: str | None,
) -> tuple[Device, str | None, bool]:
    """The person's device behind ``raw_cookie`` (bound to this person only), or a new one
    with a fresh cookie value to hand out."""
    device = None
    new_cookie = None
    if raw_cookie and isinstance(raw_cookie, str) and len(raw_cookie) <= 200:
        cookie_hash = hasher.hash("device", user.id, raw_cookie)
        device = db.scalars(
            select(Device).where(Device.user_id == user.id, Device.cookie_hash == cookie_hash)
        ).one_or_none()
    info = describe(origin.user_agent)
    new_device = device is None
    if device is None:
        if not raw_cookie or not isinstance(raw_cookie, str) or len(raw_cookie) > 200:
            raw_cookie = new_cookie = secrets.token_urlsafe(32)
        device = Device(
            tenant_id=user.tenant_id,
            user_id=user.id,
            cookie_hash=hasher.hash("device", user.id, raw_cookie),
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
    )
