"""The hot path: every authenticated request checks its session here. One plain read by
primary key (:data:`SESSION_FACTS`: the session with its person, tenant policy and device,
answered from covering indexes), the deadline rules (app.core.sessions), the security
rules that run only when something is off (app.core.request_rules), and a throttled
touch. It sits above the rules it runs: nothing below imports it.

Writes are throttled: ``last_seen_at`` (and, while sliding, the idle deadline) is written
only when the stored ``last_seen_at`` is older than
:func:`~app.core.sessions.touch_interval` (a minute, or a tenth of a short idle timeout),
so a session costs at most one write per interval however fast its client calls. Idle
expiry is therefore exact to within that interval.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.core import request_rules
from app.core.errors import InvalidSession, SessionExpired
from app.core.events import Origin
from app.core.sessions import (
    END_MESSAGES,
    Current,
    DeviceFacts,
    Facts,
    PersonFacts,
    PolicyFacts,
    Row,
    SessionFacts,
    by_session_id,
    deadlines,
    end_session,
    idle_timeout,
    touch_interval,
)
from app.db import PlainQuery, SessionOnDemand, first_row, opened, rows_changed
from app.models import Device, Tenant, User, UserSession, UTCDateTime
from app.tokens import Claims

_FACT_PARTS = (
    (SessionFacts, UserSession),
    (PersonFacts, User),
    (PolicyFacts, Tenant),
    (DeviceFacts, Device),
)


def _from_covering_indexes(statement: Select[*Row]) -> Select[*Row]:
    """``statement`` reading the person, tenant and device from the indexes that hold the
    columns the hot path reads (app.models, above Tenant). Without statistics SQLite's
    planner would take each primary key's index and then the table; on the plain path
    (app.db.PlainQuery) it is told which index to read."""
    for model, index in (
        (User, "ix_users_session_facts"),
        (Tenant, "ix_tenants_session_policy"),
        (Device, "ix_devices_session_facts"),
    ):
        statement = statement.with_hint(model, f"INDEXED BY {index}", "sqlite")
    return statement


#: The hot path's one statement: the columns of :class:`Facts`, run as a plain read
#: (app.db.first_row: compiled once, one round trip, no ORM objects).
SESSION_FACTS = PlainQuery(
    _from_covering_indexes(
        by_session_id(
            select(*(getattr(model, name) for part, model in _FACT_PARTS for name in part._fields))
        )
    )
)


def _slices() -> list[slice]:
    """Where each part of :class:`Facts` lies in a row of :data:`SESSION_FACTS`."""
    found, at = [], 0
    for part, _model in _FACT_PARTS:
        found.append(slice(at, at + len(part._fields)))
        at += len(part._fields)
    return found


_SESSION, _PERSON, _POLICY, _DEVICE = _slices()


def read_facts(db: Session | SessionOnDemand, session_id: str) -> Facts | None:
    row = first_row(db, SESSION_FACTS, session_id=session_id)
    if row is None:
        return None
    return Facts(
        SessionFacts._make(row[_SESSION]),
        PersonFacts._make(row[_PERSON]),
        PolicyFacts._make(row[_POLICY]),
        DeviceFacts._make(row[_DEVICE]),
    )


def check_session(
    db: Session | SessionOnDemand,
    claims: Claims,
    *,
    now: datetime,
    touch: bool = True,
    origin: Origin | None = None,
) -> Current:
    """The hot path: one plain read by primary key (:data:`SESSION_FACTS`), the deadline
    rules, and a throttled touch (skipped with ``touch=False``: a status poll is not
    activity). A request that passes and writes nothing has opened no transaction on
    ``db`` and built no ORM object. Given the request's ``origin``, the security rules of
    app.core.request_rules run too: an ended session's token used again (replay), and a
    mid-session IP or browser change per the tenant's binding policy (which may end the
    session: InvalidSession, reason suspicious). They cost nothing while the IP and user
    agent match the session's. Given a :class:`~app.db.SessionOnDemand` (the web layer's),
    a read-only request that passes makes no ORM session at all.

    Raises InvalidSession (unknown, ended, revoked, disabled person) or SessionExpired
    (idle or absolute deadline passed; the session is marked ended as it is found)."""
    facts = read_facts(db, claims.session_id)
    if facts is None:
        raise InvalidSession(reason="unknown")
    session, user, tenant, device = facts
    if session.user_id != claims.user_id or session.tenant_id != claims.tenant_id:
        raise InvalidSession(reason="unknown")
    if session.ended_at is not None:
        reason = session.end_reason or "logout"
        if origin is not None:
            made = opened(db)
            ended = made.get(UserSession, session.id)
            if ended is not None:
                request_rules.ended_token_used(made, ended, now=now, origin=origin)
        error = SessionExpired if reason.endswith("_expired") else InvalidSession
        raise error(END_MESSAGES.get(reason), reason=reason)
    if user.disabled:
        raise InvalidSession(END_MESSAGES["disabled"], reason="disabled")
    idle, absolute = deadlines(session, tenant, device, now)
    current = Current(db, facts, idle, absolute)
    if now >= absolute or now >= idle:
        reason = "lifetime_expired" if now >= absolute else "idle_expired"
        end_session(opened(db), current.session, reason, now=now)
        raise SessionExpired(END_MESSAGES[reason], reason=reason)
    if (
        origin is not None
        and (tenant.ip_change != "allow" or tenant.ua_change != "allow")
        and (origin.ip != session.ip or origin.user_agent != session.user_agent)
    ):
        request_rules.check_binding(opened(db), current, origin, now=now)
    if touch and now - session.last_seen_at >= touch_interval(tenant):
        _touch(db, current, now)
    return current


def slides(current: Current) -> bool:
    """Whether activity moves this session's idle deadline: the session was started
    sliding and the tenant's policy still says so (switching it off applies at once)."""
    facts = current.facts
    return facts.session.extend_on_activity and facts.tenant.extend_on_activity


#: The throttled touch: conditional, so two nodes touching at once write once, and a
#: session ended since it was read is left as it ended. By primary key, so unscoped.
TOUCH = PlainQuery(
    update(UserSession)
    .where(
        UserSession.id == bindparam("session_id"),
        UserSession.last_seen_at <= bindparam("due", type_=UTCDateTime()),
        UserSession.ended_at.is_(None),
    )
    .values(
        last_seen_at=bindparam("now", type_=UTCDateTime()),
        idle_deadline=bindparam("idle", type_=UTCDateTime()),
    )
    .execution_options(synchronize_session=False, all_tenants=True)
)


def _touch(db: Session | SessionOnDemand, current: Current, now: datetime) -> None:
    """Write last_seen_at and, while the session slides, the new idle deadline (never past
    the absolute deadline in force): :data:`TOUCH`, committed at once when the request
    has no transaction open (app.db.rows_changed). Best effort, so a busy SQLite never
    fails the request over it. ORM objects loaded later in the request read the row as
    written."""
    tenant = current.facts.tenant
    idle = current.idle_deadline
    if slides(current):
        timeout = idle_timeout(tenant, current.facts.device, now)  # longer on a trusted device
        idle = min(now + timeout, current.absolute_deadline)
    try:
        written = rows_changed(
            db,
            TOUCH,
            session_id=current.facts.session.id,
            due=now - touch_interval(tenant),
            now=now,
            idle=idle,
        )
    except OperationalError:
        return
    if written:
        current.idle_deadline = idle
        if current.loaded:  # mirror the row without marking the objects dirty
            set_committed_value(current.session, "last_seen_at", now)
            set_committed_value(current.session, "idle_deadline", idle)
