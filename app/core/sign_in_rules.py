"""The security rules run once a sign-in has its session (app.core.signin): store where
the session is, and look for a new device (mailing the person a "This wasn't me" link),
a new country and impossible travel (with a GeoIP database). Each raises its alert
(app.core.alerts) in the sign-in's transaction."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import geo
from app.core.alerts import raise_alert
from app.core.deployment import deployment, locate
from app.core.events import Origin
from app.core.not_me import NOT_ME_LIFETIME, NOT_ME_PATH, token_hash
from app.crypto import Hasher
from app.models import Device, NotMeToken, Tenant, User, UserSession
from app.outbox import queue_mail

TRAVEL_KMH = 900.0
#: closer than this is within a city database's error: never "impossible travel"
TRAVEL_MIN_KM = 500.0
#: earlier sign-ins a new one is compared with
HISTORY = 50


class SignIn(Protocol):
    """What the rules read of a sign-in (app.core.signin.SignIn)."""

    user: User
    tenant: Tenant
    session: UserSession
    device: Device
    new_device: bool


def after_sign_in(
    db: Session, hasher: Hasher, result: SignIn, *, now: datetime, origin: Origin
) -> None:
    """The sign-in rules, run by :func:`app.core.signin.sign_in` once the session exists:
    store where the session is, and look for a new device, a new country and impossible
    travel."""
    user, session, device, tenant = result.user, result.session, result.device, result.tenant
    place = locate(db, origin.ip)
    if place is not None and place.label:
        session.location = place.label[:200]
    if place is not None:
        _location_rules(db, result, place, now=now, origin=origin)
    if result.new_device and _has_other_devices(db, user, device):
        label = _device_words(device)
        where = _where(origin.ip, place)
        raise_alert(
            db,
            "new_device",
            "low",
            tenant_id=tenant.id,
            now=now,
            summary=f"Signed in on {label} from {where}.",
            user_id=user.id,
            session_id=session.id,
            origin=origin,
            device_id=device.id,
        )
        if tenant.notify_new_device:
            _mail_new_device(db, hasher, result, place, now=now, origin=origin)
    db.flush()


def _has_other_devices(db: Session, user: User, device: Device) -> bool:
    """The person's very first device is not news: no alert, no email."""
    return (
        db.scalar(
            select(Device.id).where(Device.user_id == user.id, Device.id != device.id).limit(1)
        )
        is not None
    )


def _location_rules(
    db: Session, result: SignIn, place: geo.Place, *, now: datetime, origin: Origin
) -> None:
    earlier = db.scalars(
        select(UserSession)
        .where(UserSession.user_id == result.user.id, UserSession.id != result.session.id)
        .order_by(UserSession.created_at.desc())
        .limit(HISTORY)
    ).all()
    located: list[tuple[UserSession, geo.Place]] = []
    cache: dict[str, geo.Place | None] = {}
    for old in earlier:
        if old.ip not in cache:
            cache[old.ip] = locate(db, old.ip)
        found = cache[old.ip]
        if found is not None:
            located.append((old, found))
    if not located:
        return  # nothing to compare with: this sign-in is the baseline
    common: dict[str, Any] = {
        "tenant_id": result.tenant.id,
        "now": now,
        "user_id": result.user.id,
        "session_id": result.session.id,
        "origin": origin,
    }
    countries = {found.country for _old, found in located if found.country}
    if place.country and countries and place.country not in countries:
        raise_alert(
            db,
            "new_country",
            "medium",
            summary=(
                f"Signed in from {place.label or place.country} ({origin.ip}); "
                f"earlier sign-ins came from {', '.join(sorted(countries))}."
            ),
            country=place.country,
            known_countries=sorted(countries),
            **common,
        )
    previous = next(((old, found) for old, found in located if found.has_position), None)
    if previous is None or not place.has_position:
        return
    old, before = previous
    distance = geo.distance_km(before, place)
    hours = max((now - old.created_at).total_seconds(), 60.0) / 3600
    speed = distance / hours
    if distance >= TRAVEL_MIN_KM and speed > TRAVEL_KMH:
        raise_alert(
            db,
            "impossible_travel",
            "high",
            summary=(
                f"Signed in from {place.label or origin.ip} {_duration(now - old.created_at)} "
                f"after a sign-in from {before.label or old.ip}, {distance:,.0f} km away "
                f"({speed:,.0f} km/h)."
            ),
            distance_km=round(distance),
            speed_kmh=round(speed),
            previous_session_id=old.id,
            previous_ip=old.ip,
            previous_place=before.label,
            place=place.label,
            **common,
        )


def _mail_new_device(
    db: Session,
    hasher: Hasher,
    result: SignIn,
    place: geo.Place | None,
    *,
    now: datetime,
    origin: Origin,
) -> None:
    raw = secrets.token_urlsafe(32)
    db.add(
        NotMeToken(
            tenant_id=result.tenant.id,
            token_hash=token_hash(hasher, raw),
            user_id=result.user.id,
            session_id=result.session.id,
            device_id=result.device.id,
            created_at=now,
            expires_at=now + NOT_ME_LIFETIME,
        )
    )
    settings = deployment(db)
    link = settings.link(NOT_ME_PATH.format(token=raw))
    queue_mail(
        db,
        "new_device",
        to=result.user.email,
        values={
            "product": settings.product,
            "device": result.device.name,  # None: the mail says "<browser> on <OS>"
            "browser": result.device.browser,
            "os": result.device.os,
            "kind": result.device.kind,
            "place": place.label if place is not None and place.label else None,
            "ip": origin.ip,
            "at": now,
            "link": link,
            "link_days": NOT_ME_LIFETIME.days,
        },
        tenant_id=result.tenant.id,
        now=now,
        language=result.user.language,
    )


def _device_words(device: Device) -> str:
    return f"{device.display_name} ({device.kind})"


def _where(ip: str, place: geo.Place | None) -> str:
    address = ip or "an unknown address"
    return f"{place.label} (IP {address})" if place is not None and place.label else address


def _duration(span: timedelta) -> str:
    minutes = max(1, int(span.total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{minutes // 60} hours"
