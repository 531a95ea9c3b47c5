"""The regulatory report: a tenant's sessions and audit events for a date range, as CSV.

Dates are whole UTC days, both ends included. A session is in the report when it was
alive at any moment of the range, whether it is still live, ended or expired: signed in
before the range ended, and not over before it began (ended, or past a stored deadline:
see app.core.retention.alive_since); an event when it happened in the range. Rows
stream from the database in batches (``yield_per``), so a year of a large tenant never
sits in memory. Each event row carries its chain position and hash, so the CSV can be
checked against ``holdfast audit verify``. Cells that a spreadsheet would run as a
formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) are
prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from app.core import events
from app.core.errors import N_, ValidationError
from app.core.events import Origin
from app.core.retention import alive_since
from app.core.sessions import Current
from app.models import Device, Event, User, UserSession

KINDS = ("sessions", "events")
#: the longest range one report covers
MAX_DAYS = 3660
BATCH = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

SESSION_COLUMNS = (
    "session_id",
    "user_id",
    "email",
    "device_id",
    "device_name",
    "device_kind",
    "os",
    "browser",
    "signed_in_at",
    "last_seen_at",
    "ended_at",
    "end_reason",
    "ip",
    "location",
    "user_agent",
)
EVENT_COLUMNS = (
    "event_id",
    "chain_position",
    "at",
    "kind",
    "actor_id",
    "actor_email",
    "subject_id",
    "subject_email",
    "session_id",
    "ip",
    "details",
    "hash",
)


@dataclass(frozen=True)
class Period:
    first_day: date
    last_day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The moment after the range (exclusive)."""
        return datetime.combine(self.last_day + timedelta(days=1), time.min, tzinfo=UTC)


def _day(value: date | str | None, name: str, label: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        message = (
            N_("Enter the first date as YYYY-MM-DD.")
            if label == "first"
            else N_("Enter the last date as YYYY-MM-DD.")
        )
        raise ValidationError(message, field=name) from None


def period(first: date | str | None, last: date | str | None) -> Period:
    """A date range from two dates (``YYYY-MM-DD``). Raises ValidationError (``from`` or
    ``to``) for an unreadable date, an end before the start, or a range over MAX_DAYS."""
    first_day = _day(first, "from", "first")
    last_day = _day(last, "to", "last")
    if last_day < first_day:
        raise ValidationError(N_("The last day comes before the first day."), field="to")
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise ValidationError(
            N_("A report covers at most %(most)s days."), words={"most": MAX_DAYS}, field="to"
        )
    return Period(first_day, last_day)


def record_download(
    db: Session, admin: Current, kind: str, span: Period, *, now: datetime, origin: Origin
) -> None:
    """Audit that an admin downloaded a report (``report.downloaded``)."""
    events.record(
        db,
        "report.downloaded",
        now=now,
        tenant_id=admin.tenant.id,
        origin=origin,
        actor_id=admin.user.id,
        session_id=admin.session.id,
        report=kind,
        first_day=span.first_day.isoformat(),
        last_day=span.last_day.isoformat(),
    )


def filename(kind: str, slug: str, span: Period) -> str:
    return f"holdfast-{slug}-{kind}-{span.first_day:%Y%m%d}-{span.last_day:%Y%m%d}.csv"


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def _csv(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for number, row in enumerate(rows, start=1):
        writer.writerow([_cell(value) for value in row])
        if number % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def sessions_csv(db: Session, span: Period) -> Iterator[str]:
    """The tenant's sessions that existed during ``span`` (``db`` is tenant-scoped)."""
    query = (
        select(UserSession, User.email, Device)
        .join(User, User.id == UserSession.user_id)
        .join(Device, Device.id == UserSession.device_id)
        .where(UserSession.created_at < span.end, alive_since(span.start))
        .order_by(UserSession.created_at, UserSession.id)
        .execution_options(yield_per=BATCH)
    )

    def rows() -> Iterator[list[Any]]:
        for session, email, device in db.execute(query):
            yield [
                session.id,
                session.user_id,
                email,
                device.id,
                device.display_name,
                device.kind,
                device.os,
                device.browser,
                _iso(session.created_at),
                _iso(session.last_seen_at),
                _iso(session.ended_at),
                session.end_reason,
                session.ip,
                session.location,
                session.user_agent,
            ]

    return _csv(SESSION_COLUMNS, rows())


def events_csv(db: Session, tenant_id: str, span: Period) -> Iterator[str]:
    """The tenant's audit events in ``span``, in chain order."""
    actor = aliased(User)
    subject = aliased(User)
    query = (
        select(Event, actor.email, subject.email)
        .outerjoin(actor, actor.id == Event.actor_id)
        .outerjoin(subject, subject.id == Event.subject_id)
        .where(Event.tenant_id == tenant_id, Event.at >= span.start, Event.at < span.end)
        .order_by(Event.seq, Event.id)
        .execution_options(yield_per=BATCH)
    )

    def rows() -> Iterator[list[Any]]:
        for event, actor_email, subject_email in db.execute(query):
            yield [
                event.id,
                event.seq,
                _iso(event.at),
                event.kind,
                event.actor_id,
                actor_email,
                event.subject_id,
                subject_email,
                event.session_id,
                event.ip,
                json.dumps(event.details or {}, sort_keys=True, ensure_ascii=False),
                event.hash,
            ]

    return _csv(EVENT_COLUMNS, rows())
