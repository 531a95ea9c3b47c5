"""\"This wasn't me\": the single-use link of a new-device email (app.core.sign_in_rules
sends it). Following it shows the sign-in it is about; confirming ends that session,
stops trusting that device and raises a high alert."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core import events
from app.core.alerts import raise_alert
from app.core.errors import N_, NotFound, ValidationError
from app.core.events import Origin
from app.core.sessions import end_session
from app.crypto import Hasher
from app.models import Alert, Device, NotMeToken, User, UserSession

NOT_ME_LIFETIME = timedelta(days=7)
#: the public path of a "This wasn't me" link (served by app.web.security)
NOT_ME_PATH = "/account/not-me/{token}"


@dataclass
class NotMeReport:
    """What a "This wasn't me" link is about."""

    token: NotMeToken
    user: User
    session: UserSession
    device: Device
    #: set once acted on: the session was ended by this report (False: it had ended)
    ended: bool = False
    alert: Alert | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def token_hash(hasher: Hasher, raw: str) -> str:
    return hasher.hash("not-me", raw)


def find_not_me(db: Session, hasher: Hasher, raw: str, *, now: datetime) -> NotMeReport:
    """The sign-in a link is about. Raises NotFound (unknown link), or ValidationError
    (used already, or expired) with a message for the person."""
    if not isinstance(raw, str) or not 20 <= len(raw) <= 100:
        raise NotFound(N_("This link is not valid. Sign in and check your devices instead."))
    row = db.execute(
        select(NotMeToken, User, UserSession, Device)
        .join(User, User.id == NotMeToken.user_id)
        .join(UserSession, UserSession.id == NotMeToken.session_id)
        .join(Device, Device.id == NotMeToken.device_id)
        .where(NotMeToken.token_hash.in_(hasher.candidates("not-me", raw)))
        .execution_options(all_tenants=True)
    ).one_or_none()
    if row is None:
        raise NotFound(N_("This link is not valid. Sign in and check your devices instead."))
    token, user, session, device = row
    if token.used_at is not None:
        raise ValidationError(
            N_(
                "This link was used already: that sign-in was ended then. "
                "Sign in and check your devices."
            )
        )
    if now >= token.expires_at:
        raise ValidationError(
            N_(
                "This link has expired. Sign in and check your devices: end any session you "
                "do not recognise there."
            )
        )
    return NotMeReport(token, user, session, device)


def disown_sign_in(
    db: Session, hasher: Hasher, raw: str, *, now: datetime, origin: Origin
) -> NotMeReport:
    """The person says a new-device sign-in was not them: use the link up (atomically:
    it works once), end that session (reason suspicious), stop trusting that device, and
    raise a high alert. Raises like :func:`find_not_me`."""
    report = find_not_me(db, hasher, raw, now=now)
    used = db.execute(
        update(NotMeToken)
        .where(NotMeToken.id == report.token.id, NotMeToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False, all_tenants=True)
    ).rowcount  # type: ignore[attr-defined]
    if used != 1:
        raise ValidationError(
            N_(
                "This link was used already: that sign-in was ended then. "
                "Sign in and check your devices."
            )
        )
    user, session, device = report.user, report.session, report.device
    report.ended = end_session(db, session, "suspicious", now=now, actor_id=user.id, origin=origin)
    if device.is_trusted(now):
        old = device.trusted_until
        device.trusted_until = now
        events.record(
            db,
            "device.untrusted",
            now=now,
            tenant_id=device.tenant_id,
            origin=origin,
            actor_id=user.id,
            subject_id=user.id,
            session_id=session.id,
            device_id=device.id,
            old=old.isoformat() if old else None,
        )
    events.record(
        db,
        "sign_in.disowned",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        session_id=session.id,
        device_id=device.id,
        session_was_live=report.ended,
    )
    report.alert = raise_alert(
        db,
        "sign_in_disowned",
        "high",
        tenant_id=user.tenant_id,
        now=now,
        summary=(
            f"{user.email} said the sign-in on {device.display_name} from "
            f"{session.ip or 'an unknown address'}"
            f"{' (' + session.location + ')' if session.location else ''} at "
            f"{session.created_at:%d %b %Y, %H:%M} UTC was not them. "
            + (
                "That session was ended and the device is no longer trusted."
                if report.ended
                else "That session had already ended; the device is no longer trusted."
            )
        ),
        user_id=user.id,
        session_id=session.id,
        origin=origin,
        device_id=device.id,
        session_ip=session.ip,
    )
    db.flush()
    return report
