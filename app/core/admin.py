"""A tenant admin's view of the tenant's sessions (the explorer), and ending anyone's
sessions; audited as the admin's actions. Lookups of the tenant's rows and the SQL
conditions shared with other admin pages: app.core.tenancy; cursors: app.core.paging."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Select,
    String,
    column,
    or_,
    select,
    values,
)
from sqlalchemy.orm import Session

from app.core import events
from app.core.access import Actor, actor_details, actor_id
from app.core.errors import N_, NotFound, ValidationError
from app.core.events import Origin
from app.core.paging import check_limit, decode_cursor, encode_cursor
from app.core.sessions import Current, deadlines, end_session
from app.core.tenancy import escape_like, live_condition, selective, tenant_session, tenant_user
from app.models import Device, Tenant, User, UserSession
from app.user_agents import DEVICE_KINDS

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
            raise ValidationError(
                N_("status is one of %(values)s."),
                words={"values": ", ".join(STATUSES)},
                field="status",
            )
        if self.sort not in SORTS:
            raise ValidationError(
                N_("sort is one of %(values)s."), words={"values": ", ".join(SORTS)}, field="sort"
            )
        if self.kind is not None and self.kind not in DEVICE_KINDS:
            raise ValidationError(
                N_("kind is one of %(values)s."),
                words={"values": ", ".join(DEVICE_KINDS)},
                field="kind",
            )
        for name in ("q", "os", "browser", "ip_prefix", "user_id"):
            value = getattr(self, name)
            if value is not None and len(value) > 200:
                raise ValidationError(
                    N_("%(name)s is at most 200 characters."), words={"name": name}, field=name
                )
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


def search_sessions(
    db: Session,
    filters: SessionFilters,
    *,
    now: datetime,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """One page of the tenant's sessions, newest first by the chosen sort.

    Two steps, so a million sessions cost what a thousand do: the page's ids are found on
    the sessions table alone (joining devices only to filter on kind, OS or browser), by a
    walk down the sort index, the live-sessions index or one person's index; then just
    those rows are loaded with their person and device (:func:`session_rows`).

    Free text first finds the matching people and named devices; when there are few, their
    sessions are read by index (one keyset query per side, merged), else the walk down the
    sort index filters as it goes (a broad match fills a page quickly)."""
    filters.validate()
    check_limit(limit, MAX_PAGE)
    sort_column = (
        UserSession.last_seen_at if filters.sort == "last_active" else UserSession.created_at
    )
    query: Select = select(UserSession.id, sort_column)  # type: ignore[type-arg]
    if filters.kind or filters.os or filters.browser:
        query = query.join(Device, Device.id == UserSession.device_id)
    query = _apply_filters(db, query, filters, now)
    if cursor:
        after_value, after_id = decode_cursor(cursor)
        query = query.where(
            # The first term alone is an index range; the second breaks ties.
            sort_column <= after_value,
            or_(sort_column < after_value, UserSession.id < after_id),
        )
    query = query.order_by(sort_column.desc(), UserSession.id.desc()).limit(limit + 1)
    if filters.q:
        keys = _text_search(db, query, filters.q, limit + 1)
    else:
        keys = [tuple(row) for row in db.execute(query).all()]
    page = Page(rows=session_rows(db, [row_id for row_id, _value in keys[:limit]]))
    if len(keys) > limit:
        last_id, last_value = keys[limit - 1]
        page.next_cursor = encode_cursor(_aware(last_value), last_id)
    return page


#: free text matching at most this many people and devices is looked up by index
TEXT_LOOKUP_LIMIT = 200


def _text_search(  # type: ignore[type-arg]
    db: Session, query: Select, text: str, wanted: int
) -> list[tuple[Any, ...]]:
    """The first ``wanted`` (id, sort value) rows of ``query`` (ordered, limited to
    ``wanted``) whose person's email or device's name contains ``text``."""
    pattern = f"%{escape_like(text.strip().lower())}%"
    people = db.scalars(
        select(User.id).where(User.email.like(pattern, escape="\\")).limit(TEXT_LOOKUP_LIMIT + 1)
    ).all()
    devices = db.scalars(
        select(Device.id)
        .where(Device.name.ilike(pattern, escape="\\"))
        .limit(TEXT_LOOKUP_LIMIT + 1)
    ).all()
    if len(people) + len(devices) > TEXT_LOOKUP_LIMIT:
        broad = query.where(
            or_(
                UserSession.user_id.in_(
                    select(User.id).where(User.email.like(pattern, escape="\\"))
                ),
                UserSession.device_id.in_(
                    select(Device.id).where(Device.name.ilike(pattern, escape="\\"))
                ),
            )
        )
        return [tuple(row) for row in db.execute(broad).all()]
    found: dict[str, tuple[Any, ...]] = {}
    if people:
        for row in db.execute(query.where(selective(db, UserSession.user_id.in_(people)))):
            found[row[0]] = tuple(row)
    if devices:
        on_devices = query.where(selective(db, UserSession.device_id.in_(devices)))
        for row in db.execute(on_devices):
            found[row[0]] = tuple(row)
    # Both sides are in the page's order; the page is the top of their union.
    merged = sorted(found.values(), key=lambda row: (_aware(row[1]), row[0]), reverse=True)
    return merged[:wanted]


def _aware(moment: datetime) -> datetime:
    """Column values read through a bare select keep the UTC type's zone; be sure."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _apply_filters(db: Session, query: Select, filters: SessionFilters, now: datetime) -> Select:  # type: ignore[type-arg]
    if filters.status == "live":
        query = query.where(*live_condition(now))
    elif filters.status == "ended":
        query = query.where(
            or_(
                UserSession.ended_at.is_not(None),
                UserSession.idle_deadline <= now,
                UserSession.absolute_deadline <= now,
            )
        )
    if filters.user_id:
        query = query.where(selective(db, UserSession.user_id == filters.user_id))
    if filters.kind:
        query = query.where(Device.kind == filters.kind)
    if filters.os:
        query = query.where(Device.os == filters.os)
    if filters.browser:
        query = query.where(Device.browser == filters.browser)
    if filters.ip_prefix:
        query = query.where(UserSession.ip.like(f"{escape_like(filters.ip_prefix)}%", escape="\\"))
    if filters.signed_in_from:
        query = query.where(UserSession.created_at >= filters.signed_in_from)
    if filters.signed_in_to:
        query = query.where(UserSession.created_at < filters.signed_in_to)
    return query


def end_session_as_admin(
    db: Session, admin: Current, session_id: str, *, now: datetime, origin: Origin
) -> UserSession:
    session = tenant_session(db, session_id)
    end_session(db, session, "revoked_by_admin", now=now, actor_id=admin.user.id, origin=origin)
    return session


def record_admin_action(
    db: Session,
    kind: str,
    admin: Actor,
    user: User,
    *,
    now: datetime,
    origin: Origin,
    **details: Any,
) -> None:
    """Audit something a tenant admin (or the operator) did to a person of the tenant."""
    events.record(
        db,
        kind,
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=actor_id(admin),
        subject_id=user.id,
        **details,
        **actor_details(admin),
    )


def end_user_sessions(
    db: Session,
    admin: Actor,
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
        end_session(db, session, reason, now=now, actor_id=actor_id(admin), origin=origin)
    record_admin_action(
        db,
        "user.sessions_ended",
        admin,
        user,
        now=now,
        origin=origin,
        count=len(live),
        reason=reason,
    )
    return list(live)


# --- shared by the explorer, the dashboard and the people pages -------------------------


@dataclass(frozen=True)
class SessionState:
    live: bool
    #: why it ended (also for a session past a deadline nobody has marked yet)
    reason: str | None
    #: when a live session ends if nothing more happens, under the policy in force
    expires: datetime | None


def session_state(
    session: UserSession, tenant: Tenant, device: Device, now: datetime
) -> SessionState:
    """Live or ended, and why or until when, as the explorer shows it."""
    if session.ended_at is not None:
        return SessionState(False, session.end_reason, None)
    idle, absolute = deadlines(session, tenant, device, now)
    passed = [
        (when, why)
        for when, why in ((idle, "idle_expired"), (absolute, "lifetime_expired"))
        if now >= when
    ]
    if passed:  # whichever deadline came first ended it
        return SessionState(False, min(passed)[1], None)
    return SessionState(True, None, min(idle, absolute))


def end_sessions_as_admin(
    db: Session, admin: Current, session_ids: list[str], *, now: datetime, origin: Origin
) -> list[UserSession]:
    """End several sessions of the tenant at once (the explorer's "End selected").

    All or nothing: NotFound if any id is not a session of the tenant (nothing is ended
    then), ValidationError for none or more than a page. Sessions already over are
    returned unchanged. Each ending is audited naming the admin."""
    wanted = list(dict.fromkeys(i for i in session_ids if isinstance(i, str) and i))
    if not wanted:
        raise ValidationError(N_("Select at least one session."), field="session")
    if len(wanted) > MAX_PAGE:
        raise ValidationError(
            N_("End at most %(most)s sessions at a time."),
            words={"most": MAX_PAGE},
            field="session",
        )
    found = {s.id: s for s in db.scalars(select(UserSession).where(UserSession.id.in_(wanted)))}
    if len(found) != len(wanted):
        raise NotFound(N_("No such session"))
    ended = [found[i] for i in wanted]
    for session in ended:
        end_session(db, session, "revoked_by_admin", now=now, actor_id=admin.user.id, origin=origin)
    return ended


def session_rows(db: Session, session_ids: list[str]) -> list[SessionRow]:
    """The explorer rows of the given sessions of the tenant, in the order given (ids of
    another tenant are left out).

    The ids arrive as a ``VALUES`` list the query starts from, so each is one primary-key
    lookup: given ``id IN (…50 ids…) AND tenant_id = ?`` instead, SQLite (without
    statistics) would rather scan the whole tenant down a ``tenant_id`` index."""
    wanted = [i for i in dict.fromkeys(session_ids) if isinstance(i, str)]
    if not wanted:
        return []
    page = values(column("id", String), name="page").data([(i,) for i in wanted]).cte("page")
    found = {
        row[0].id: SessionRow(*row)
        for row in db.execute(
            select(UserSession, User, Device)
            .select_from(page)
            .join(UserSession, UserSession.id == page.c.id)
            .join(User, User.id == UserSession.user_id)
            .join(Device, Device.id == UserSession.device_id)
        ).all()
    }
    return [found[i] for i in wanted if i in found]


# --- the audit log ------------------------------------------------------------------------------
