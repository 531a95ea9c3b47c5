"""The tenant's limit on live sessions a person may hold: at sign-in, the person's sessions
that are over are marked ended first; then ``evict_oldest`` ends the least recently active
(untrusted devices first, and mails the person) and ``deny`` refuses before the code is
used up, with the live sessions to choose one from (and, when the limit was lowered below
what the person holds, how many more the choice ends: ``also_ends``). The caller holds the
person's row lock (app.core.signin), so parallel sign-ins cannot pass the limit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.deployment import deployment
from app.core.errors import N_plural, SessionLimitReached
from app.core.events import Origin
from app.core.sessions import deadlines, end_session, live_sessions
from app.models import Device, Tenant, User, UserSession
from app.outbox import queue_mail


def within_limit(
    db: Session, user: User, tenant: Tenant, end_session_id: str | None, now: datetime
) -> UserSession | None:
    """The live session chosen to end in exchange (deny mode), if any. Raises
    SessionLimitReached when deny mode refuses the sign-in."""
    sweep_expired(db, user, tenant, now)
    live = live_sessions(db, user.id, now)
    limit = tenant.max_sessions_per_user
    chosen = next((s for s in live if s.id == end_session_id), None) if end_session_id else None
    if limit and len(live) >= limit and tenant.limit_mode == "deny" and chosen is None:
        raise limit_reached(db, live, limit)
    return chosen


def limit_reached(db: Session, live: list[UserSession], limit: int) -> SessionLimitReached:
    """deny mode's refusal: the live sessions to choose from, and how many more than the
    chosen one a choice ends. When the limit was lowered below what the person holds
    (9 sessions, limit 2), signing in must end 8: the chosen one and the 7 least
    recently active of the others (untrusted devices first, as evict_oldest picks), and
    the answer says so (``also_ends``) before anything ends."""
    also_ends = len(live) - limit
    if also_ends:
        # more sessions than the limit: at least two, so "sessions" is always plural
        one, other = N_plural(
            "You have %(held)s active sessions and your organisation now allows %(limit)s. "
            "Choose one to end: ending it also ends your %(num)s least recently active "
            "other session (untrusted devices first), so that you are within the limit "
            "after signing in here.",
            "You have %(held)s active sessions and your organisation now allows %(limit)s. "
            "Choose one to end: ending it also ends your %(num)s least recently active "
            "other sessions (untrusted devices first), so that you are within the limit "
            "after signing in here.",
        )
        count, words = also_ends, {"held": len(live), "limit": limit}
    else:
        one, other = N_plural(
            "You already have %(num)s active session, the most your organisation allows. "
            "End it to sign in here.",
            "You already have %(num)s active sessions, the most your organisation allows. "
            "End one of them to sign in here.",
        )
        count, words = len(live), {}
    return SessionLimitReached(
        one,
        plural=other,
        count=count,
        words=words,
        sessions=live,
        also_ends=also_ends,
        devices={
            d.id: d
            for d in db.scalars(select(Device).where(Device.id.in_({s.device_id for s in live})))
        },
    )


def sweep_expired(db: Session, user: User, tenant: Tenant, now: datetime) -> None:
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


def evict(
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


def mail_evicted(
    db: Session, user: User, old: UserSession, new_device: Device, now: datetime
) -> None:
    queue_mail(
        db,
        "session_evicted",
        to=user.email,
        values={
            "product": deployment(db).product,
            "at": now,
            "device_name": new_device.name,  # None: the mail says "<browser> on <OS>"
            "browser": new_device.browser,
            "os": new_device.os,
            "old_signed_in_at": old.created_at,
            "old_ip": old.ip,
        },
        tenant_id=user.tenant_id,
        now=now,
        language=user.language,
    )
