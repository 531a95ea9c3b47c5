"""A tenant admin's work on people: add, change role, disable and enable, stop trusting
devices, and what a person's page shows.

Rules:

* Every change is audited in the same transaction, naming the admin as ``actor_id`` and
  the person as ``subject_id``.
* A tenant always keeps at least one enabled admin: the last one can be neither demoted
  nor disabled (:class:`LastAdmin`). The tenant's admin rows are locked first (``FOR
  UPDATE`` on PostgreSQL; SQLite's write transaction already serialises), so two admins
  demoting each other at once cannot both succeed.
* An admin cannot disable themselves (they would lock themselves out mid-action); they
  may step down to member while another admin remains.
* Disabling ends every live session of the person at once (reason ``revoked_by_admin``)
  and the hot path refuses a disabled person's tokens from the next request on. A role
  change needs no token change: the role is read from the row on every request.
* Work on a person of another tenant answers NotFound (the database session is scoped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.core import accounts
from app.core.access import Actor, Operator
from app.core.admin import end_user_sessions, record_admin_action
from app.core.errors import N_, ValidationError
from app.core.events import Origin
from app.core.sessions import Current, live_sessions
from app.core.tenancy import live_condition, selective, tenant_user
from app.models import ROLES, Device, Tenant, User, UserSession
from app.outbox import queue_mail

#: the signed-out history on a person's page goes back this far
HISTORY_DAYS = 30
HISTORY_LIMIT = 100
MAX_PAGE = 200


class LastAdmin(ValidationError):
    code, status, message = (
        "last_admin",
        409,
        N_("A tenant needs at least one admin: make someone else an admin first."),
    )


@dataclass
class PersonRow:
    user: User
    live_sessions: int = 0


@dataclass
class PeoplePage:
    rows: list[PersonRow] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass
class PersonView:
    """Everything a person's admin page shows."""

    user: User
    devices: list[Device]
    live: list[UserSession]
    #: sessions that ended in the last HISTORY_DAYS days, newest first (at most HISTORY_LIMIT)
    history: list[UserSession]
    devices_by_id: dict[str, Device]


def search_people(
    db: Session,
    *,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    now: datetime,
) -> PeoplePage:
    """The tenant's people by email, with how many live sessions each holds. ``q`` finds
    part of an email or name. Keyset pagination on the (unique) email."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValidationError(
            N_("limit is 1 to %(most)s."), words={"most": MAX_PAGE}, field="limit"
        )
    query: Select[Any] = select(User)
    text = (q or "").strip().lower()
    if len(text) > 200:
        raise ValidationError(N_("Search for at most 200 characters."), field="q")
    if text:
        pattern = f"%{_escape_like(text)}%"
        query = query.where(
            or_(User.email.like(pattern, escape="\\"), User.name.ilike(pattern, escape="\\"))
        )
    if cursor:
        if len(cursor) > 320:
            raise ValidationError(N_("That page cursor is not valid."), field="cursor")
        query = query.where(User.email > cursor)
    found = list(db.scalars(query.order_by(User.email).limit(limit + 1)))
    page = PeoplePage(rows=[PersonRow(user) for user in found[:limit]])
    if len(found) > limit:
        page.next_cursor = page.rows[-1].user.email
    counts = (
        dict(
            db.execute(
                select(UserSession.user_id, func.count())
                .where(
                    UserSession.user_id.in_([row.user.id for row in page.rows]),
                    *live_condition(now),
                )
                .group_by(UserSession.user_id)
            ).all()
        )
        if page.rows
        else {}
    )
    for row in page.rows:
        row.live_sessions = counts.get(row.user.id, 0)
    return page


def person_view(db: Session, user_id: str, *, now: datetime) -> PersonView:
    """A person of the tenant with their devices, live sessions and recent history, or
    NotFound."""
    user = tenant_user(db, user_id)
    devices = list(
        db.scalars(
            select(Device).where(Device.user_id == user.id).order_by(Device.last_seen_at.desc())
        )
    )
    since = now - timedelta(days=HISTORY_DAYS)
    history = list(
        db.scalars(
            select(UserSession)
            .where(
                selective(db, UserSession.user_id == user.id),
                or_(
                    UserSession.ended_at >= since,
                    # past a deadline but not marked ended yet: over all the same
                    and_(
                        UserSession.ended_at.is_(None),
                        or_(UserSession.idle_deadline <= now, UserSession.absolute_deadline <= now),
                        UserSession.last_seen_at >= since,
                    ),
                ),
            )
            .order_by(UserSession.last_seen_at.desc())
            .limit(HISTORY_LIMIT)
        )
    )
    return PersonView(
        user=user,
        devices=devices,
        live=live_sessions(db, user.id, now),
        history=history,
        devices_by_id={device.id: device for device in devices},
    )


def find_person(db: Session, email: str) -> User | None:
    """The tenant's person with this email (any case), or None."""
    return db.scalars(select(User).where(User.email == email.strip().lower())).one_or_none()


def add_person(
    db: Session,
    admin: Current,
    email: str,
    *,
    now: datetime,
    origin: Origin,
    role: str = "member",
    name: str | None = None,
    sign_in_url: str,
    product: str = "Holdfast",
) -> User:
    """Add a person to the admin's tenant and email them an invitation to sign in (sent
    after commit). The invitation leads to the sign-in page, which emails the one-time
    code: a code is bound to the browser that asked for it, so one mailed unasked could
    not be used. Raises ValidationError (bad or taken email, bad role or name)."""
    clean_name = " ".join((name or "").split()) or None
    if clean_name and len(clean_name) > 200:
        raise ValidationError(N_("A name is at most 200 characters."), field="name")
    tenant = db.get_one(Tenant, admin.user.tenant_id)
    user = accounts.add_user(
        db,
        tenant,
        email,
        now=now,
        role=role,
        name=clean_name,
        actor_id=admin.user.id,
        origin=origin,
    )
    queue_mail(
        db,
        "person_added",
        to=user.email,
        values={
            "product": product,
            "tenant_name": tenant.name,
            "added_by": admin.user.email,
            "as_admin": role == "admin",
            "email": user.email,
            "sign_in_url": sign_in_url,
        },
        tenant_id=tenant.id,
        now=now,
        # the new person has no language yet: the admin's is the likeliest to be theirs
        language=admin.user.language,
    )
    return user


def set_role(
    db: Session, admin: Actor, user_id: str, role: str, *, now: datetime, origin: Origin
) -> User:
    """Make a person admin or member (``admin``: a signed-in admin or the operator).
    Raises ValidationError (unknown role), LastAdmin (the tenant's last admin stepping
    down) or NotFound. Setting the role they have already changes and records nothing."""
    user = tenant_user(db, user_id)  # first: another tenant's person is NotFound, whatever the role
    if role not in ROLES:
        raise ValidationError(
            N_("Role must be one of %(roles)s."), words={"roles": ", ".join(ROLES)}, field="role"
        )
    if user.role == role:
        return user
    if user.role == "admin":
        _keep_an_admin(db, user)
    old, user.role = user.role, role
    record_admin_action(
        db,
        "user.role_changed",
        admin,
        user,
        now=now,
        origin=origin,
        old=old,
        new=role,
    )
    db.flush()
    return user


def disable(
    db: Session, admin: Actor, user_id: str, *, now: datetime, origin: Origin
) -> list[UserSession]:
    """Disable a person and end all their live sessions at once; returns those sessions.
    Raises ValidationError (disabling yourself), LastAdmin or NotFound. Disabling a
    disabled person changes nothing."""
    user = tenant_user(db, user_id)
    if not isinstance(admin, Operator) and user.id == admin.user.id:
        raise ValidationError(
            N_("You cannot disable your own account: ask another admin."), field="user"
        )
    if user.disabled:
        return []
    if user.role == "admin":
        _keep_an_admin(db, user)
    user.disabled = True
    record_admin_action(
        db,
        "user.disabled",
        admin,
        user,
        now=now,
        origin=origin,
    )
    ended = end_user_sessions(db, admin, user.id, now=now, origin=origin)
    db.flush()
    return ended


def enable(db: Session, admin: Actor, user_id: str, *, now: datetime, origin: Origin) -> User:
    """Let a disabled person sign in again (their old sessions stay ended)."""
    user = tenant_user(db, user_id)
    if not user.disabled:
        return user
    user.disabled = False
    record_admin_action(
        db,
        "user.enabled",
        admin,
        user,
        now=now,
        origin=origin,
    )
    db.flush()
    return user


def untrust_devices(
    db: Session, admin: Current, user_id: str, *, now: datetime, origin: Origin
) -> int:
    """Stop trusting every device of the person; returns how many were trusted. Nothing
    ends on the spot: as when a person stops trusting one device (app.core.trust), each
    device's ``trusted_until`` becomes now, so its live sessions keep running and get the
    ordinary idle timeout and absolute lifetime counted from now at the earliest (see
    sessions.policy_deadlines). A session idle for an hour on a trusted device (8-hour
    trusted idle timeout) is therefore not signed out by its next request."""
    user = tenant_user(db, user_id)
    count = db.execute(
        update(Device)
        .where(Device.user_id == user.id, Device.trusted_until > now)
        .values(trusted_until=now)
        .execution_options(synchronize_session="fetch")
    ).rowcount  # type: ignore[attr-defined]
    record_admin_action(
        db,
        "devices.untrusted",
        admin,
        user,
        now=now,
        origin=origin,
        count=count,
    )
    db.flush()
    return int(count or 0)


def _keep_an_admin(db: Session, leaving: User) -> None:
    """LastAdmin unless an enabled admin other than ``leaving`` remains. Locks the
    tenant's admin rows until the transaction ends."""
    admins = db.scalars(
        select(User.id)
        .where(User.tenant_id == leaving.tenant_id, User.role == "admin", User.disabled.is_(False))
        .with_for_update()
    ).all()
    if not any(admin_id != leaving.id for admin_id in admins):
        raise LastAdmin()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
