"""Trusted devices: trust the device in hand, stop trusting one, remove one.

* Trust is per device, with its own ``trusted_until``: now plus the tenant's trusted-device
  lifetime. Sessions on a trusted device get the trusted idle timeout (8 hours unless the
  tenant says otherwise, see :func:`app.core.sessions.idle_timeout`), and the trusted
  lifetime when the policy lets trusted devices outlive the absolute lifetime (see
  :func:`app.core.sessions.lifetime`). That is what "stay signed in longer here" means.
* Only the device a person is using can be trusted from a session ("Trust this device"),
  the way "remember this device" works elsewhere: trust vouches for a device in the
  person's hands, not for one they merely see in a list. Its live sessions get the longer
  lifetime (counted from their start) and idle timeout (counted from their last activity)
  at once, so the caller re-issues the current token.
* Stopping trust ends nothing else: sessions keep running, and from that moment get the
  ordinary absolute lifetime and idle timeout (``trusted_until`` becomes the moment trust
  ended, and both count from it at the earliest).
* Removing a device ends its live sessions and its trust, and forgets its device cookie:
  a later sign-in from that browser counts as a new device.

Every change writes an audit event (``device.trusted``, ``device.untrusted``,
``device.removed``) in the same transaction.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import N_, Forbidden
from app.core.events import Origin
from app.core.sessions import (
    Current,
    deadlines,
    end_session,
    idle_timeout,
    lifetime,
    own_device,
    record_device_event,
)
from app.models import Device, Tenant, UserSession


def trusted_until(tenant: Tenant, now: datetime) -> datetime:
    """When trust given now runs out under the tenant's policy."""
    return now + timedelta(seconds=tenant.trusted_lifetime)


def trust_device(
    db: Session, current: Current, device_id: str, *, now: datetime, origin: Origin
) -> Device:
    """Trust the caller's own current device until now + the trusted-device lifetime
    (trusting again renews it). Its live sessions, the current one included, get the
    trusted lifetime and idle timeout at once; ``current.session.absolute_deadline`` then
    says how long the current token may live. Raises NotFound (not the person's device)
    or Forbidden (a device other than the one in use)."""
    device = own_device(db, current.user, device_id)
    if device.id != current.device.id:
        raise Forbidden(N_("You can only trust the device you are using now."))
    # Only sessions alive now: trust must not bring back one whose deadline passed.
    alive = [
        session
        for session in _live_on(db, device)
        if min(deadlines(session, current.tenant, device, now)) > now
    ]
    old = device.trusted_until
    device.trusted_until = trusted_until(current.tenant, now)
    tenant = current.tenant
    span = lifetime(tenant, device, now)
    timeout = idle_timeout(tenant, device, now)
    extended = []
    for session in alive:
        moved = False
        longer = session.created_at + span
        if longer > session.absolute_deadline:
            session.absolute_deadline = longer
            moved = True
        # A sliding session the tenant froze keeps its idle deadline (app.core.sessions).
        frozen = session.extend_on_activity and not tenant.extend_on_activity
        if not frozen:
            base = session.last_seen_at if session.extend_on_activity else session.created_at
            idle = min(base + timeout, session.absolute_deadline)
            if idle > session.idle_deadline:
                session.idle_deadline = idle
                moved = True
        if moved:
            extended.append(session.id)
    record_device_event(
        db,
        "device.trusted",
        current,
        device,
        now=now,
        origin=origin,
        old=_iso(old),
        until=_iso(device.trusted_until),
        sessions_extended=extended,
    )
    db.flush()
    return device


def stop_trusting(
    db: Session, current: Current, device_id: str, *, now: datetime, origin: Origin
) -> Device:
    """Withdraw trust from one of the person's devices; nothing else ends. A device that
    is not trusted is left as it is (no event). Raises NotFound for another's device."""
    device = own_device(db, current.user, device_id)
    if not device.is_trusted(now):
        return device
    old = device.trusted_until
    device.trusted_until = now
    record_device_event(
        db,
        "device.untrusted",
        current,
        device,
        now=now,
        origin=origin,
        old=_iso(old),
    )
    db.flush()
    return device


def remove_device(
    db: Session, current: Current, device_id: str, *, now: datetime, origin: Origin
) -> list[UserSession]:
    """End every live session on one of the person's devices (the current session's end
    counts as signing out), end its trust and forget its device cookie. Returns the
    sessions it ended. Raises NotFound for another person's device."""
    device = own_device(db, current.user, device_id)
    was_trusted = device.is_trusted(now)
    ended = []
    for session in _live_on(db, device):
        reason = "logout" if session.id == current.session.id else "revoked_by_user"
        if end_session(db, session, reason, now=now, actor_id=current.user.id, origin=origin):
            ended.append(session)
    if was_trusted:
        device.trusted_until = now
    # A hash of a value never handed out: the device's cookie matches nothing any more.
    device.cookie_hash = secrets.token_hex(32)
    record_device_event(
        db,
        "device.removed",
        current,
        device,
        now=now,
        origin=origin,
        was_trusted=was_trusted,
        sessions_ended=[s.id for s in ended],
    )
    db.flush()
    return ended


def _live_on(db: Session, device: Device) -> list[UserSession]:
    return list(
        db.scalars(
            select(UserSession).where(
                UserSession.device_id == device.id, UserSession.ended_at.is_(None)
            )
        )
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
