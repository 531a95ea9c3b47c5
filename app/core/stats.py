"""The admin dashboard's figures and chart data, as SQL aggregates.

Every number here is counted by the database (``COUNT`` and ``GROUP BY``), never by
loading rows into Python, so the dashboard costs the same kind of work at a thousand
sessions and at a million: index range scans (see the ``ix_sessions_live`` and
``ix_sessions_tenant_ended`` indexes).

Queries on sessions, devices and alerts run on the admin's tenant-scoped database
session (app.db) and see only that tenant. Events are not tenant-scoped rows (a code
asked for an unknown address belongs to no tenant), so their queries name the scoped
tenant through :func:`app.core.tenancy.scoped_tenant_id`.

Days and hours are UTC days and hours: the dashboard says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, case, cast, extract, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app import models
from app.core.errors import N_
from app.core.tenancy import live_condition, scoped_tenant_id
from app.models import Device, Event, UserSession

#: the charts look back this far
CHART_DAYS = 30
#: pie charts show the most common values and fold the rest into "Other"
TOP_VALUES = 8
#: session length buckets: (label, upper bound in seconds; None is unbounded)
LENGTH_BUCKETS: tuple[tuple[str, int | None], ...] = (
    (N_("under 5 min"), 5 * 60),
    (N_("5-30 min"), 30 * 60),
    (N_("30 min-2 h"), 2 * 3600),
    (N_("2-8 h"), 8 * 3600),
    (N_("8-24 h"), 24 * 3600),
    (N_("1-7 days"), 7 * 86400),
    (N_("over 7 days"), None),
)
#: the device kinds' labels (app.user_agents.DEVICE_KINDS), marked for the catalog: the
#: admin pages translate a chart's labels
KIND_LABELS = {
    "phone": N_("Phone"),
    "tablet": N_("Tablet"),
    "desktop": N_("Desktop"),
    "bot": N_("Bot"),
    "other": N_("Other"),
}
#: what a live-sessions pie can be broken down by
BREAKDOWNS = ("kind", "os", "browser")


@dataclass(frozen=True)
class Figures:
    """The dashboard's live numbers."""

    live_sessions: int
    people_signed_in: int
    sign_ins_today: int
    failed_codes_today: int
    open_alerts: int
    #: the start of "today" (UTC) the day figures count from
    today: datetime


@dataclass
class Series:
    """One chart: a label and a value per bar or slice, and the filter value each stands
    for (None where no explorer filter matches it, e.g. "Other")."""

    labels: list[str] = field(default_factory=list)
    values: list[int] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)

    def add(self, label: str, value: int, key: str | None = None) -> None:
        self.labels.append(label)
        self.values.append(int(value))
        self.keys.append(key)

    @property
    def total(self) -> int:
        return sum(self.values)


def start_of_day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def figures(db: Session, *, now: datetime) -> Figures:
    """Sessions live now, distinct people holding them, sign-ins since midnight UTC,
    wrong codes entered since midnight UTC, and alerts still open."""
    today = start_of_day(now)
    live, people = db.execute(
        select(func.count(), func.count(func.distinct(UserSession.user_id))).where(
            *live_condition(now)
        )
    ).one()
    sign_ins = db.scalar(select(func.count(UserSession.id)).where(UserSession.created_at >= today))
    failed = db.scalar(
        select(func.count(Event.id)).where(
            Event.tenant_id == scoped_tenant_id(db),
            Event.kind == "code.failed",
            Event.at >= today,
        )
    )
    return Figures(
        live_sessions=live or 0,
        people_signed_in=people or 0,
        sign_ins_today=sign_ins or 0,
        failed_codes_today=failed or 0,
        open_alerts=open_alerts(db),
        today=today,
    )


def open_alerts(db: Session) -> int:
    """Alerts nobody has resolved or acknowledged yet (0 where monitoring is not installed)."""
    alert = getattr(models, "Alert", None)
    if alert is None:
        return 0
    return db.scalar(select(func.count(alert.id)).where(alert.status == "open")) or 0


def sign_ins_per_day(db: Session, *, now: datetime, days: int = CHART_DAYS) -> Series:
    """Sessions started on each of the last ``days`` UTC days, today last; days without
    any are 0. Keys are ISO dates."""
    first = start_of_day(now) - timedelta(days=days - 1)
    day = _day(db, UserSession.created_at)
    counts = dict(
        db.execute(
            select(day, func.count()).where(UserSession.created_at >= first).group_by(day)
        ).all()
    )
    series = Series()
    for offset in range(days):
        moment = first + timedelta(days=offset)
        key = moment.date().isoformat()
        series.add(f"{moment:%d %b}", counts.get(key, 0), key)
    return series


def sign_ins_by_hour(db: Session, *, now: datetime, days: int = CHART_DAYS) -> Series:
    """Sessions started in the last ``days`` days, by UTC hour of day (00 to 23)."""
    since = start_of_day(now) - timedelta(days=days - 1)
    hour = _hour(db, UserSession.created_at)
    counts = {
        int(h): n
        for h, n in db.execute(
            select(hour, func.count()).where(UserSession.created_at >= since).group_by(hour)
        ).all()
    }
    series = Series()
    for value in range(24):
        series.add(f"{value:02d}", counts.get(value, 0))
    return series


def live_by(db: Session, breakdown: str, *, now: datetime, top: int = TOP_VALUES) -> Series:
    """Live sessions by the device's kind, OS or browser, most common first; past the
    ``top`` most common the rest are one "Other" slice. Keys are the filter values."""
    if breakdown not in BREAKDOWNS:
        raise ValueError(breakdown)
    column = getattr(Device, breakdown)
    rows = db.execute(
        select(column, func.count(UserSession.id).label("n"))
        .join(Device, Device.id == UserSession.device_id)
        .where(*live_condition(now))
        .group_by(column)
        .order_by(func.count(UserSession.id).desc(), column)
    ).all()
    series = Series()
    for value, count in rows[:top]:
        series.add(_label(breakdown, value), count, value if value else None)
    rest = sum(count for _value, count in rows[top:])
    if rest:
        series.add(N_("Other"), rest)
    return series


def session_lengths(db: Session, *, now: datetime, days: int = CHART_DAYS) -> Series:
    """Sessions that ended in the last ``days`` days, by how long they lasted (sign-in
    to end), in :data:`LENGTH_BUCKETS`."""
    since = now - timedelta(days=days)
    seconds = _seconds_between(db, UserSession.created_at, UserSession.ended_at)
    whens: list[tuple[ColumnElement[bool], int]] = [
        (seconds < upper, index)
        for index, (_label, upper) in enumerate(LENGTH_BUCKETS)
        if upper is not None
    ]
    bucket = case(*whens, else_=len(LENGTH_BUCKETS) - 1)
    counts = {
        int(b): n
        for b, n in db.execute(
            select(bucket.label("bucket"), func.count())
            .where(UserSession.ended_at >= since)
            .group_by(bucket)
        ).all()
    }
    series = Series()
    for index, (label, _upper) in enumerate(LENGTH_BUCKETS):
        series.add(label, counts.get(index, 0))
    return series


def _label(breakdown: str, value: str | None) -> str:
    if not value:
        return N_("Unknown")
    return KIND_LABELS.get(value, value.capitalize()) if breakdown == "kind" else value


# Date arithmetic differs between SQLite (text timestamps) and PostgreSQL (timestamptz).


def _dialect(db: Session) -> str:
    return db.get_bind().dialect.name


def _day(db: Session, column: Any) -> ColumnElement[str]:
    """The UTC calendar day of ``column`` as 'YYYY-MM-DD'."""
    if _dialect(db) == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def _hour(db: Session, column: Any) -> ColumnElement[int]:
    """The UTC hour of day (0-23) of ``column``."""
    if _dialect(db) == "postgresql":
        return cast(extract("hour", func.timezone("UTC", column)), Integer)
    return cast(func.strftime("%H", column), Integer)


def _seconds_between(db: Session, start: Any, end: Any) -> ColumnElement[float]:
    if _dialect(db) == "postgresql":
        return cast(extract("epoch", end - start), Float)
    return (func.julianday(end) - func.julianday(start)) * 86400.0
