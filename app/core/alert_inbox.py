"""What a tenant's admins do with alerts (app.core.alerts): list them (filters, keyset
pages), count the open ones, acknowledge (someone is looking) and resolve them; both
audited."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.core import events
from app.core.access import require_admin
from app.core.alerts import SEVERITIES, TITLES
from app.core.errors import N_, NotFound, ValidationError
from app.core.events import Origin
from app.core.paging import check_limit, decode_cursor, encode_cursor
from app.core.sessions import Current
from app.models import ALERT_STATUSES, Alert, User

#: status filters the alert list understands ("unresolved" = open or acknowledged)
STATUS_FILTERS = ("unresolved", *ALERT_STATUSES, "all")
MAX_PAGE = 200


@dataclass
class AlertRow:
    alert: Alert
    user: User | None

    @property
    def title(self) -> str:
        return TITLES.get(self.alert.kind, self.alert.kind)

    @property
    def summary(self) -> str:
        return str(self.alert.details.get("summary", ""))


@dataclass
class AlertPage:
    rows: list[AlertRow] = field(default_factory=list)
    next_cursor: str | None = None


def open_alert_count(db: Session, tenant_id: str | None = None) -> int:
    """Alerts nobody has acknowledged or resolved yet, in the tenant ``db`` is scoped to
    (or ``tenant_id``)."""
    query = select(func.count(Alert.id)).where(Alert.status == "open")
    if tenant_id is not None:
        query = query.where(Alert.tenant_id == tenant_id)
    return db.scalar(query) or 0


def list_alerts(
    db: Session,
    *,
    status: str = "unresolved",
    severity: str | None = None,
    user_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> AlertPage:
    """One page of the tenant's alerts, newest first, with keyset pagination (the cursor
    is the last row's time and id). Raises ValidationError for a bad filter or cursor."""
    if status not in STATUS_FILTERS:
        raise ValidationError(
            N_("status is one of %(values)s."),
            words={"values": ", ".join(STATUS_FILTERS)},
            field="status",
        )
    if severity is not None and severity not in SEVERITIES:
        raise ValidationError(
            N_("severity is one of %(values)s."),
            words={"values": ", ".join(SEVERITIES)},
            field="severity",
        )
    check_limit(limit, MAX_PAGE)
    person = aliased(User)
    query = select(Alert, person).outerjoin(person, person.id == Alert.user_id)
    if status == "unresolved":
        query = query.where(Alert.status != "resolved")
    elif status != "all":
        query = query.where(Alert.status == status)
    if severity is not None:
        query = query.where(Alert.severity == severity)
    if user_id is not None:
        query = query.where(Alert.user_id == user_id)
    if cursor:
        after, after_id = decode_cursor(cursor)
        query = query.where(
            or_(Alert.created_at < after, and_(Alert.created_at == after, Alert.id < after_id))
        )
    rows = db.execute(
        query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit + 1)
    ).all()
    page = AlertPage(rows=[AlertRow(alert, user) for alert, user in rows[:limit]])
    if len(rows) > limit:
        last = page.rows[-1].alert
        page.next_cursor = encode_cursor(last.created_at, last.id)
    return page


def tenant_alert(db: Session, alert_id: str) -> AlertRow:
    """One alert of the tenant ``db`` is scoped to; NotFound otherwise."""
    row = (
        db.execute(
            select(Alert, User)
            .outerjoin(User, User.id == Alert.user_id)
            .where(Alert.id == alert_id)
        ).one_or_none()
        if isinstance(alert_id, str)
        else None
    )
    if row is None:
        raise NotFound(N_("No such alert"))
    return AlertRow(*row)


def acknowledge(
    db: Session, current: Current, alert_id: str, *, now: datetime, origin: Origin
) -> AlertRow:
    """Mark an open alert acknowledged (someone is looking into it). Acknowledging one
    that is acknowledged or resolved changes nothing. Raises Forbidden,
    FreshSignInRequired or NotFound."""
    row = _admin_alert(db, current, alert_id, now)
    alert = row.alert
    if alert.status == "open":
        alert.status = "acknowledged"
        alert.acknowledged_at = now
        alert.acknowledged_by = current.user.id
        _audit(db, current, alert, "alert.acknowledged", now, origin)
    return row


def resolve(
    db: Session, current: Current, alert_id: str, *, now: datetime, origin: Origin
) -> AlertRow:
    """Mark an alert resolved (done with). Resolving a resolved alert changes nothing.
    Raises Forbidden, FreshSignInRequired or NotFound."""
    row = _admin_alert(db, current, alert_id, now)
    alert = row.alert
    if alert.status != "resolved":
        alert.status = "resolved"
        alert.resolved_at = now
        alert.resolved_by = current.user.id
        _audit(db, current, alert, "alert.resolved", now, origin)
    return row


def _admin_alert(db: Session, current: Current, alert_id: str, now: datetime) -> AlertRow:
    """The alert, for an admin of its tenant with a fresh sign-in (as every admin action
    needs: app.core.access). Raises Forbidden, FreshSignInRequired or NotFound."""
    require_admin(current, now)
    row = tenant_alert(db, alert_id)
    if row.alert.tenant_id != current.tenant.id:
        raise NotFound(N_("No such alert"))
    return row


def _audit(
    db: Session, current: Current, alert: Alert, kind: str, now: datetime, origin: Origin
) -> None:
    events.record(
        db,
        kind,
        now=now,
        tenant_id=alert.tenant_id,
        origin=origin,
        actor_id=current.user.id,
        subject_id=alert.user_id,
        session_id=current.session.id,
        alert_id=alert.id,
        alert_kind=alert.kind,
    )
    db.flush()
