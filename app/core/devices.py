"""A person's devices: recognised by a long-lived random cookie (or an API client's
``deviceId``), stored only as a keyed hash bound to the person (the same browser signed in
as someone else is another device), described by their user agent, named and trusted by
the person."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.events import Origin
from app.crypto import Hasher
from app.models import Device, User
from app.user_agents import describe

#: the longest device cookie (or deviceId) taken as one
MAX_DEVICE_COOKIE = 200


def device_hash(db: Session, hasher: Hasher, user: User, raw_cookie: str | None) -> str | None:
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


def recognise_device(
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
    """The person's device stored under ``cookie_hash`` (:func:`device_hash`: bound to
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
