"""The audit log as a tenant's admins read it: filters, pages of events (the cursor is
the last event's id: events are append-only, so ids only grow), and every matching event
in batches for the CSV export. (The trail itself, its hash chain and pseudonyms:
app.core.audit.)"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from app.core.errors import N_, NotFound, ValidationError
from app.core.paging import check_limit
from app.core.tenancy import escape_like, scoped_tenant_id
from app.models import Device, Event, OidcClient, User, UserSession

MAX_PAGE = 200


@dataclass
class EventFilters:
    """What the audit log filters by. ``kind`` ending in "." is a prefix ("session.")."""

    kind: str | None = None
    actor_id: str | None = None
    subject_id: str | None = None
    at_from: datetime | None = None
    at_to: datetime | None = None

    def validate(self) -> EventFilters:
        for name in ("kind", "actor_id", "subject_id"):
            value = getattr(self, name)
            if value is not None and len(value) > 60:
                raise ValidationError(
                    N_("%(name)s is at most 60 characters."), words={"name": name}, field=name
                )
        if self.at_from and self.at_to and self.at_to <= self.at_from:
            raise ValidationError(N_("The end date is before the start date."), field="to")
        return self


@dataclass
class EventPage:
    rows: list[Event] = field(default_factory=list)
    next_cursor: str | None = None


def search_events(
    db: Session, filters: EventFilters, *, cursor: str | None = None, limit: int = 50
) -> EventPage:
    """One page of the tenant's events, newest first. The cursor is the id of the last
    event shown (events are append-only, so ids only grow)."""
    check_limit(limit, MAX_PAGE)
    query = _events_query(db, filters.validate())
    if cursor:
        query = query.where(Event.id < _event_cursor(cursor))
    found = list(db.scalars(query.order_by(Event.id.desc()).limit(limit + 1)))
    page = EventPage(rows=found[:limit])
    if len(found) > limit:
        page.next_cursor = str(page.rows[-1].id)
    return page


def iter_event_batches(
    db: Session, filters: EventFilters, *, batch: int = 1000
) -> Iterator[list[Event]]:
    """Every event matching ``filters``, newest first, ``batch`` rows at a time (keyset),
    so an export of millions of events never holds more than one batch."""
    query = _events_query(db, filters.validate()).order_by(Event.id.desc()).limit(batch)
    after: int | None = None
    while True:
        rows = list(db.scalars(query if after is None else query.where(Event.id < after)))
        if rows:
            yield rows
        if len(rows) < batch:
            return
        after = rows[-1].id
        for row in rows:  # written out by now: do not let the identity map grow
            db.expunge(row)


#: how many of their own events a person sees on their security page, at most
OWN_EVENTS_LIMIT = 50


def own_events(
    db: Session, user_id: str, *, since: datetime, limit: int = OWN_EVENTS_LIMIT
) -> list[Event]:
    """The events a person did or that were done to them since ``since``, newest first
    (at most ``limit``): what their own security page shows them. Retention purges
    older events anyway."""
    check_limit(limit, MAX_PAGE)
    return list(
        db.scalars(
            select(Event)
            .where(
                Event.tenant_id == scoped_tenant_id(db),
                or_(Event.actor_id == user_id, Event.subject_id == user_id),
                Event.at >= since,
            )
            .order_by(Event.id.desc())
            .limit(limit)
        )
    )


@dataclass
class EventNames:
    """What the ids in some events stand for, to say the events in words: the people
    (actor and subject), the devices (named in ``details.device_id``, else the device of
    the event's session) and the OpenID apps (``details.client_id``). An id missing here
    names nothing any more (an erased person, another tenant's row)."""

    people: dict[str, User] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    session_devices: dict[str, str] = field(default_factory=dict)
    apps: dict[str, str] = field(default_factory=dict)

    def device_of(self, event: Event) -> Device | None:
        device_id = event.details.get("device_id") or self.session_devices.get(
            event.session_id or ""
        )
        return self.devices.get(device_id) if isinstance(device_id, str) else None


def names_for(db: Session, events: Iterable[Event]) -> EventNames:
    """The people, devices and apps ``events`` name, in four queries at most (whatever
    the number of events), all within the tenant ``db`` is scoped to."""
    rows = list(events)
    people = {e.actor_id for e in rows if e.actor_id} | {e.subject_id for e in rows if e.subject_id}
    device_ids = {d for e in rows if isinstance(d := e.details.get("device_id"), str)}
    session_ids = {e.session_id for e in rows if e.session_id and "device_id" not in e.details}
    app_ids = {a for e in rows if isinstance(a := e.details.get("client_id"), str)}
    names = EventNames()
    if people:
        names.people = {u.id: u for u in db.scalars(select(User).where(User.id.in_(people)))}
    if session_ids:
        names.session_devices = {
            sid: did
            for sid, did in db.execute(
                select(UserSession.id, UserSession.device_id).where(UserSession.id.in_(session_ids))
            )
        }
        device_ids |= set(names.session_devices.values())
    if device_ids:
        names.devices = {
            d.id: d for d in db.scalars(select(Device).where(Device.id.in_(device_ids)))
        }
    if app_ids:
        names.apps = {
            cid: name
            for cid, name in db.execute(
                select(OidcClient.id, OidcClient.name).where(OidcClient.id.in_(app_ids))
            )
        }
    return names


def tenant_event(db: Session, event_id: int) -> Event:
    """An event of the admin's tenant, or NotFound (also for another tenant's)."""
    event = db.scalars(
        select(Event).where(Event.id == event_id, Event.tenant_id == scoped_tenant_id(db))
    ).one_or_none()
    if event is None:
        raise NotFound(N_("No such event"))
    return event


def _events_query(db: Session, filters: EventFilters) -> Select[Any]:
    query = select(Event).where(Event.tenant_id == scoped_tenant_id(db))
    if filters.kind:
        if filters.kind.endswith("."):
            query = query.where(Event.kind.like(f"{escape_like(filters.kind)}%", escape="\\"))
        else:
            query = query.where(Event.kind == filters.kind)
    if filters.actor_id:
        query = query.where(Event.actor_id == filters.actor_id)
    if filters.subject_id:
        query = query.where(Event.subject_id == filters.subject_id)
    if filters.at_from:
        query = query.where(Event.at >= filters.at_from)
    if filters.at_to:
        query = query.where(Event.at < filters.at_to)
    return query


def _event_cursor(cursor: str) -> int:
    if not cursor.isdigit() or len(cursor) > 18:
        raise ValidationError(N_("That page cursor is not valid."), field="cursor")
    return int(cursor)
