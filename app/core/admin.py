"""A tenant admin's view of the tenant's sessions, and ending anyone's sessions.

Every query here runs on a session scoped to the admin's tenant (app.db), so another
tenant's rows are simply not there: looking one up by id answers NotFound.

Lists use keyset pagination: the cursor is the sort key and id of the last row shown, so
page 1,000 costs what page 1 costs (no OFFSET scans).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from app.core import events
from app.core.errors import NotFound, ValidationError
from app.core.events import Origin
from app.core.sessions import Current, end_session
from app.devices import DEVICE_KINDS
from app.models import Device, User, UserSession

STATUSES = ("live", "ended", "all")
SORTS = ("last_active", "signed_in")
MAX_PAGE = 200


@dataclass
class SessionFilters:
    """What the sessions explorer (and GET /api/admin/sessions) can filter by."""

    status: str = "live"
    user_id: str | None = None
    #: free text on the person's email and the device name
    q: str | None = None
    kind: str | None = None
    os: str | None = None
    browser: str | None = None
    ip_prefix: str | None = None
    signed_in_from: datetime | None = None
    signed_in_to: datetime | None = None
    sort: str = "last_active"

    def validate(self) -> SessionFilters:
        if self.status not in STATUSES:
            raise ValidationError(f"status is one of {', '.join(STATUSES)}.", field="status")
        if self.sort not in SORTS:
            raise ValidationError(f"sort is one of {', '.join(SORTS)}.", field="sort")
        if self.kind is not None and self.kind not in DEVICE_KINDS:
            raise ValidationError(f"kind is one of {', '.join(DEVICE_KINDS)}.", field="kind")
        for name in ("q", "os", "browser", "ip_prefix", "user_id"):
            value = getattr(self, name)
            if value is not None and len(value) > 200:
                raise ValidationError(f"{name} is at most 200 characters.", field=name)
        return self


@dataclass
class SessionRow:
    session: UserSession
    user: User
    device: Device


@dataclass
class Page:
    rows: list[SessionRow] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(sort_value: datetime, row_id: str) -> str:
    raw = json.dumps([sort_value.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValidationError for anything that is not a cursor this module made."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None or not isinstance(row_id, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValidationError("That page cursor is not valid.", field="cursor") from error
    return moment, row_id


def search_sessions(
    db: Session,
    filters: SessionFilters,
    *,
    now: datetime,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """One page of the tenant's sessions, newest first by the chosen sort."""
    filters.validate()
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit is 1 to {MAX_PAGE}.", field="limit")
    sort_column = (
        UserSession.last_seen_at if filters.sort == "last_active" else UserSession.created_at
    )
    query: Select = (  # type: ignore[type-arg]
        select(UserSession, User, Device)
        .join(User, User.id == UserSession.user_id)
        .join(Device, Device.id == UserSession.device_id)
    )
    query = _apply_filters(query, filters, now)
    if cursor:
        after_value, after_id = decode_cursor(cursor)
        query = query.where(
            or_(
                sort_column < after_value,
                and_(sort_column == after_value, UserSession.id < after_id),
            )
        )
    query = query.order_by(sort_column.desc(), UserSession.id.desc()).limit(limit + 1)
    found = [SessionRow(*row) for row in db.execute(query).all()]
    page = Page(rows=found[:limit])
    if len(found) > limit:
        last = page.rows[-1].session
        value = last.last_seen_at if filters.sort == "last_active" else last.created_at
        page.next_cursor = encode_cursor(value, last.id)
    return page


def _apply_filters(query: Select, filters: SessionFilters, now: datetime) -> Select:  # type: ignore[type-arg]
    if filters.status == "live":
        query = query.where(
            UserSession.ended_at.is_(None),
            UserSession.idle_deadline > now,
            UserSession.absolute_deadline > now,
        )
    elif filters.status == "ended":
        query = query.where(
            or_(
                UserSession.ended_at.is_not(None),
                UserSession.idle_deadline <= now,
                UserSession.absolute_deadline <= now,
            )
        )
    if filters.user_id:
        query = query.where(UserSession.user_id == filters.user_id)
    if filters.q:
        pattern = f"%{_escape_like(filters.q.strip().lower())}%"
        query = query.where(
            or_(User.email.like(pattern, escape="\\"), Device.name.ilike(pattern, escape="\\"))
        )
    if filters.kind:
        query = query.where(Device.kind == filters.kind)
    if filters.os:
        query = query.where(Device.os == filters.os)
    if filters.browser:
        query = query.where(Device.browser == filters.browser)
    if filters.ip_prefix:
        query = query.where(UserSession.ip.like(f"{_escape_like(filters.ip_prefix)}%", escape="\\"))
    if filters.signed_in_from:
        query = query.where(UserSession.created_at >= filters.signed_in_from)
    if filters.signed_in_to:
        query = query.where(UserSession.created_at < filters.signed_in_to)
    return query


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def tenant_session(db: Session, session_id: str) -> UserSession:
    """A session of the admin's tenant, or NotFound (also for another tenant's)."""
    session = db.get(UserSession, session_id) if isinstance(session_id, str) else None
    if session is None:
        raise NotFound("No such session")
    return session


def tenant_user(db: Session, user_id: str) -> User:
    """A person of the admin's tenant, or NotFound (also for another tenant's)."""
    user = db.get(User, user_id) if isinstance(user_id, str) else None
    if user is None:
        raise NotFound("No such person")
    return user


def end_session_as_admin(
    db: Session, admin: Current, session_id: str, *, now: datetime, origin: Origin
) -> UserSession:
    session = tenant_session(db, session_id)
    end_session(db, session, "revoked_by_admin", now=now, actor_id=admin.user.id, origin=origin)
    return session


def end_user_sessions(
    db: Session,
    admin: Current,
    user_id: str,
    *,
    now: datetime,
    origin: Origin,
    reason: str = "revoked_by_admin",
) -> list[UserSession]:
    """End every live session of a person of the tenant (the admin's own included, if
    it is the admin's own id: they asked for it)."""
    user = tenant_user(db, user_id)
    live = db.scalars(
        select(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
    ).all()
    for session in live:
        end_session(db, session, reason, now=now, actor_id=admin.user.id, origin=origin)
    events.record(
        db,
        "user.sessions_ended",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=admin.user.id,
        subject_id=user.id,
        count=len(live),
        reason=reason,
    )
    return list(live)
