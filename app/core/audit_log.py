"""The audit log as a tenant's admins read it: filters, pages of events (the cursor is
the last event's id: events are append-only, so ids only grow), and every matching event
in batches for the CSV export. (The trail itself, its hash chain and pseudonyms:
app.core.audit.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.core.errors import NotFound, ValidationError
from app.core.paging import check_limit
from app.core.tenancy import escape_like, scoped_tenant_id
from app.models import Event

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
                raise ValidationError(f"{name} is at most 60 characters.", field=name)
        if self.at_from and self.at_to and self.at_to <= self.at_from:
            raise ValidationError("The end date is before the start date.", field="to")
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


def tenant_event(db: Session, event_id: int) -> Event:
    """An event of the admin's tenant, or NotFound (also for another tenant's)."""
    event = db.scalars(
        select(Event).where(Event.id == event_id, Event.tenant_id == scoped_tenant_id(db))
    ).one_or_none()
    if event is None:
        raise NotFound("No such event")
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
        raise ValidationError("That page cursor is not valid.", field="cursor")
    return int(cursor)
