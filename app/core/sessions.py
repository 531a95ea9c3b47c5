"""Sessions: their deadlines, the live session behind a request, ending one or many, and
the person's devices. (The check every request runs: app.core.session_check.)

Deadlines. A session ends at the earlier of

* its **idle deadline**: ``last_seen_at + idle_timeout`` (and never later than the stored
  ``idle_deadline``), moved forward by activity while ``extend_on_activity`` is on. With
  it off, the idle deadline stays where sign-in put it. On a trusted device the idle
  timeout is the tenant's ``trusted_idle_timeout`` when that is longer (8 hours unless
  the tenant says otherwise: a tablet passed round a ward stays signed in through a
  shift), see :func:`idle_timeout`;
* its **absolute deadline**: ``created_at + absolute_lifetime`` (or ``trusted_lifetime``
  on a trusted device when the policy lets trusted devices outlive the absolute lifetime),
  and never later than the stored ``absolute_deadline``. When a device stops being
  trusted (trust expired or was withdrawn) while a session runs on it, that session is not
  ended on the spot: from then on it gets the ordinary absolute lifetime, counted from the
  moment trust ended (``trusted_until``), and the ordinary idle timeout, counted from its
  last activity or the moment trust ended, whichever is later.

The tenant's policy is read on every check, so tightening it applies to existing sessions
on their next request. A longer idle timeout reaches every live session too: the policy
change moves their stored idle deadlines (app.core.policy), so the hot path needs no more
than its one read, and a session that had already run out stays over. A longer absolute
lifetime never lengthens a session already running. Switching the tenant's
extend-on-activity off freezes every idle deadline where it stands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol, TypeVarTuple

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from app.core import events
from app.core.errors import N_, InvalidSession, NotFound, ValidationError
from app.core.events import Origin
from app.db import SessionOnDemand, opened
from app.models import Device, Tenant, User, UserSession

#: why a session ended, as the person signed out by it should read it (English, marked for
#: the catalog: a page says it with gettext)
END_MESSAGES = {
    "logout": N_("You signed out."),
    "revoked_by_user": N_("You were signed out from another device."),
    "revoked_by_admin": N_("An administrator signed you out."),
    "limit_evicted": N_("You were signed out because you signed in on another device."),
    "idle_expired": N_("You were signed out after a period of inactivity."),
    "lifetime_expired": N_("Your session reached its maximum length. Please sign in again."),
    "suspicious": N_("You were signed out to protect your account."),
    "keys_rotated": N_("Please sign in again: sign-in keys were changed."),
    "user_erased": N_("This account no longer exists."),
    "disabled": N_("Your account is disabled. Ask an administrator."),
}


class SessionFacts(NamedTuple):
    """The columns of a session row the hot path decides with."""

    id: str
    tenant_id: str
    user_id: str
    device_id: str
    created_at: datetime
    last_seen_at: datetime
    idle_deadline: datetime
    absolute_deadline: datetime
    extend_on_activity: bool
    ended_at: datetime | None
    end_reason: str | None
    ip: str | None
    user_agent: str | None


class PersonFacts(NamedTuple):
    id: str
    email: str
    role: str
    disabled: bool


class PolicyFacts(NamedTuple):
    """The tenant's session policy, as the hot path applies it."""

    id: str
    idle_timeout: int
    absolute_lifetime: int
    extend_on_activity: bool
    trusted_lifetime: int
    trusted_outlives_absolute: bool
    ip_change: str
    ua_change: str
    trusted_idle_timeout: int


class DeviceFacts(NamedTuple):
    id: str
    trusted_until: datetime | None

    def is_trusted(self, now: datetime) -> bool:
        return self.trusted_until is not None and self.trusted_until > now


class Facts(NamedTuple):
    """What one hot-path read knows: the session, its person, tenant policy and device."""

    session: SessionFacts
    user: PersonFacts
    tenant: PolicyFacts
    device: DeviceFacts


Row = TypeVarTuple("Row")


def by_session_id(columns: Select[*Row]) -> Select[*Row]:
    """``columns`` of one session row joined with its person, tenant and device. It opts
    out of the per-tenant loader criteria (app.db) on purpose: the row is fetched by
    primary key and then checked against the token's tenant in check_session."""
    return (
        columns.select_from(UserSession)
        .join(User, User.id == UserSession.user_id)
        .join(Tenant, Tenant.id == UserSession.tenant_id)
        .join(Device, Device.id == UserSession.device_id)
        .where(UserSession.id == bindparam("session_id"))
        .execution_options(all_tenants=True)
    )


#: The same row as ORM objects, for what changes or shows them (Current loads it).
SESSION_BY_ID = by_session_id(select(UserSession, User, Tenant, Device))


class Current:
    """The live session behind a request.

    The hot path decides on :attr:`facts` alone (one plain read). The ORM objects
    ``session``, ``user``, ``tenant`` and ``device`` are loaded into the request's
    database session the first time something asks for one: pages that show them and
    views that change them pay for it, a validation (``/auth/verify``, the JSON status)
    does not (nor, given a :class:`~app.db.SessionOnDemand`, for the session itself)."""

    def __init__(
        self,
        db: Session | SessionOnDemand,
        facts: Facts,
        idle_deadline: datetime,
        absolute_deadline: datetime,
    ) -> None:
        self.db = db
        self.facts = facts
        self.idle_deadline = idle_deadline
        self.absolute_deadline = absolute_deadline
        self._objects: tuple[UserSession, User, Tenant, Device] | None = None

    @property
    def expires_at(self) -> datetime:
        return min(self.idle_deadline, self.absolute_deadline)

    @property
    def loaded(self) -> bool:
        """Whether the ORM objects have been loaded (see the class docstring)."""
        return self._objects is not None

    @property
    def session(self) -> UserSession:
        return self._load()[0]

    @property
    def user(self) -> User:
        return self._load()[1]

    @property
    def tenant(self) -> Tenant:
        return self._load()[2]

    @property
    def device(self) -> Device:
        return self._load()[3]

    def _load(self) -> tuple[UserSession, User, Tenant, Device]:
        if self._objects is None:
            query = {"session_id": self.facts.session.id}
            row = opened(self.db).execute(SESSION_BY_ID, query).first()
            if row is None:  # erased since the check
                raise InvalidSession(reason="unknown")
            self._objects = (row[0], row[1], row[2], row[3])
        return self._objects


@dataclass
class DeviceView:
    """One of the person's devices as their devices page shows it: one card, holding
    its live sessions (none for a trusted device nobody is signed in on)."""

    device: Device
    sessions: list[UserSession] = field(default_factory=list)
    current: bool = False
    #: when each session ends if nothing more happens, by session id
    expires: dict[str, datetime] = field(default_factory=dict)
    #: when and why each session ends, by session id
    sign_outs: dict[str, SignOut] = field(default_factory=dict)

    @property
    def last_active(self) -> datetime:
        return max((s.last_seen_at for s in self.sessions), default=self.device.last_seen_at)


def touch_interval(tenant: Tenant | PolicyFacts) -> timedelta:
    """How stale last_seen_at may get before a request writes it again."""
    return timedelta(seconds=max(5, min(60, tenant.idle_timeout // 10)))


def lifetime(
    tenant: Tenant | PolicyFacts, device: Device | DeviceFacts, now: datetime
) -> timedelta:
    """The absolute lifetime a session on ``device`` gets under the tenant's policy."""
    if device.is_trusted(now) and tenant.trusted_outlives_absolute:
        return timedelta(seconds=max(tenant.trusted_lifetime, tenant.absolute_lifetime))
    return timedelta(seconds=tenant.absolute_lifetime)


def idle_timeout(
    tenant: Tenant | PolicyFacts, device: Device | DeviceFacts, now: datetime
) -> timedelta:
    """How long a session on ``device`` may go without a request under the tenant's
    policy: the idle timeout, or on a device trusted now the trusted idle timeout when
    that is longer (a tenant that wants no difference sets it no longer than the idle
    timeout)."""
    seconds = tenant.idle_timeout
    if device.is_trusted(now):
        seconds = max(seconds, tenant.trusted_idle_timeout)
    return timedelta(seconds=seconds)


def trust_ended_during(
    session: SessionTimes, device: Device | DeviceFacts, now: datetime
) -> datetime | None:
    """When the device's trust ended, if it ended (ran out or was withdrawn) while
    ``session`` ran; else None."""
    ended = device.trusted_until
    if ended is not None and session.created_at < ended <= now:
        return ended
    return None


class SessionTimes(Protocol):
    """What the deadline rules read of a session (a row, its facts or a query's row)."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def last_seen_at(self) -> datetime: ...
    @property
    def extend_on_activity(self) -> bool: ...
    @property
    def absolute_deadline(self) -> datetime: ...


def policy_deadlines(
    session: SessionTimes,
    tenant: Tenant | PolicyFacts,
    device: Device | DeviceFacts,
    now: datetime,
) -> tuple[datetime, datetime]:
    """(idle deadline, absolute deadline) the policy in force now gives ``session``,
    before its stored idle deadline caps them (see :func:`deadlines`)."""
    start = session.created_at
    base = session.last_seen_at if session.extend_on_activity else session.created_at
    trust_ended = trust_ended_during(session, device, now)
    if trust_ended is not None:
        # The ordinary lifetime and idle timeout count from then at the earliest, so
        # losing trust never ends a session on the spot.
        start = trust_ended
        base = max(base, trust_ended)
    absolute = min(session.absolute_deadline, start + lifetime(tenant, device, now))
    return min(base + idle_timeout(tenant, device, now), absolute), absolute


def deadlines(
    session: UserSession | SessionFacts,
    tenant: Tenant | PolicyFacts,
    device: Device | DeviceFacts,
    now: datetime,
) -> tuple[datetime, datetime]:
    """(idle deadline, absolute deadline) under the policy in force now: the policy's
    (:func:`policy_deadlines`), the idle one never later than the stored one."""
    idle, absolute = policy_deadlines(session, tenant, device, now)
    return min(session.idle_deadline, idle), absolute


@dataclass(frozen=True)
class SignOut:
    """When and why a live session ends if nothing ends it sooner, as the devices page
    says it: "after 8 hours without use (trusted device), at 14:05 at the latest"."""

    #: when it ends with no more activity
    at: datetime
    #: when it ends however active (its absolute deadline)
    latest: datetime
    #: how long without a request ends it; None when activity does not move its deadline
    idle: timedelta | None
    #: the idle timeout is the trusted devices' longer one
    trusted_idle: bool
    #: the latest moment comes from the trusted devices' longer lifetime
    trusted_lifetime: bool

    @property
    def idle_first(self) -> bool:
        """Whether going unused can end it before its absolute deadline."""
        return self.at < self.latest


def sign_out(
    session: UserSession,
    tenant: Tenant,
    device: Device,
    now: datetime,
) -> SignOut:
    """When and why ``session`` ends under the policy in force now (see :class:`SignOut`)."""
    idle, absolute = deadlines(session, tenant, device, now)
    trusted = device.is_trusted(now)
    slides = session.extend_on_activity and tenant.extend_on_activity
    return SignOut(
        at=idle,
        latest=absolute,
        idle=idle_timeout(tenant, device, now) if slides else None,
        trusted_idle=trusted and tenant.trusted_idle_timeout > tenant.idle_timeout,
        trusted_lifetime=trusted
        and absolute > session.created_at + timedelta(seconds=tenant.absolute_lifetime),
    )


def end_session(
    db: Session,
    session: UserSession,
    reason: str,
    *,
    now: datetime,
    actor_id: str | None = None,
    origin: Origin = events.SYSTEM,
) -> bool:
    """End ``session`` for ``reason`` (one of models.END_REASONS). False if it had ended."""
    if session.ended_at is not None:
        return False
    session.ended_at = now
    session.end_reason = reason
    events.record(
        db,
        "session.ended",
        now=now,
        tenant_id=session.tenant_id,
        origin=origin,
        actor_id=actor_id,
        subject_id=session.user_id,
        session_id=session.id,
        reason=reason,
        device_id=session.device_id,
    )
    return True


def own_session(db: Session, user: User, session_id: str) -> UserSession:
    """One of ``user``'s sessions, or NotFound (also for another person's session)."""
    session = db.get(UserSession, session_id) if isinstance(session_id, str) else None
    if session is None or session.user_id != user.id:
        raise NotFound(N_("No such session"))
    return session


def end_own_session(
    db: Session, current: Current, session_id: str, *, now: datetime, origin: Origin
) -> UserSession:
    """The person ends one of their sessions (their current one counts as signing out)."""
    session = own_session(db, current.user, session_id)
    reason = "logout" if session.id == current.session.id else "revoked_by_user"
    end_session(db, session, reason, now=now, actor_id=current.user.id, origin=origin)
    return session


def end_other_sessions(
    db: Session, current: Current, *, now: datetime, origin: Origin
) -> list[UserSession]:
    """End every live session of the person except the current one."""
    others = db.scalars(
        select(UserSession).where(
            UserSession.user_id == current.user.id,
            UserSession.ended_at.is_(None),
            UserSession.id != current.session.id,
        )
    ).all()
    for session in others:
        end_session(
            db, session, "revoked_by_user", now=now, actor_id=current.user.id, origin=origin
        )
    return list(others)


def live_sessions(db: Session, user_id: str, now: datetime) -> list[UserSession]:
    """The person's sessions not ended and not past their stored deadlines, newest first."""
    return list(
        db.scalars(
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.ended_at.is_(None),
                UserSession.idle_deadline > now,
                UserSession.absolute_deadline > now,
            )
            .order_by(UserSession.last_seen_at.desc())
        )
    )


def devices_of(db: Session, current: Current, *, now: datetime) -> list[DeviceView]:
    """The person's devices that hold live sessions or are trusted, one view each (a
    device is never listed twice): the current device first, then devices with live
    sessions by latest activity, then trusted devices nobody is signed in on."""
    views: dict[str, DeviceView] = {}
    for session in live_sessions(db, current.user.id, now):
        views.setdefault(session.device_id, DeviceView(device=None))  # type: ignore[arg-type]
        views[session.device_id].sessions.append(session)
    devices = db.scalars(select(Device).where(Device.user_id == current.user.id)).all()
    for device in devices:
        if device.id in views:
            views[device.id].device = device
        elif device.is_trusted(now):
            views[device.id] = DeviceView(device=device)
    for view in list(views.values()):
        view.current = view.device.id == current.device.id
        for session in list(view.sessions):
            rule = sign_out(session, current.tenant, view.device, now)
            if rule.at <= now and session.id != current.session.id:
                # Over under a tightened policy; it is marked ended on its next request.
                view.sessions.remove(session)
                continue
            view.expires[session.id] = rule.at
            view.sign_outs[session.id] = rule
        if not view.sessions and not view.current and not view.device.is_trusted(now):
            del views[view.device.id]
    return sorted(
        views.values(),
        key=lambda v: (not v.current, not v.sessions, -v.last_active.timestamp()),
    )


def own_device(db: Session, user: User, device_id: str) -> Device:
    device = db.get(Device, device_id) if isinstance(device_id, str) else None
    if device is None or device.user_id != user.id:
        raise NotFound(N_("No such device"))
    return device


def rename_device(
    db: Session, current: Current, device_id: str, name: str, *, now: datetime, origin: Origin
) -> Device:
    """Give a device a name of 1-60 characters; an empty name restores the derived one."""
    device = own_device(db, current.user, device_id)
    name = " ".join((name or "").split())
    if len(name) > 60:
        raise ValidationError(N_("A device name is at most 60 characters."), field="name")
    old = device.name
    device.name = name or None
    record_device_event(
        db, "device.renamed", current, device, now=now, origin=origin, old=old, new=device.name
    )
    return device


def record_device_event(
    db: Session,
    kind: str,
    current: Current,
    device: Device,
    *,
    now: datetime,
    origin: Origin,
    **details: object,
) -> None:
    """Audit a change the signed-in person made to one of their own devices."""
    events.record(
        db,
        kind,
        now=now,
        tenant_id=device.tenant_id,
        origin=origin,
        actor_id=current.user.id,
        subject_id=current.user.id,
        session_id=current.session.id,
        device_id=device.id,
        **details,
    )


def device_count(db: Session, user_id: str, now: datetime) -> int:
    """How many devices hold a live session of the person."""
    return (
        db.scalar(
            select(func.count(func.distinct(UserSession.device_id))).where(
                UserSession.user_id == user_id,
                UserSession.ended_at.is_(None),
                UserSession.idle_deadline > now,
                UserSession.absolute_deadline > now,
            )
        )
        or 0
    )
