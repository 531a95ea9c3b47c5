"""GDPR: a person's data export, and an admin erasing a person.

**Export** (:func:`export`): everything Holdfast holds about the person, as one JSON
document: their account, devices, sessions (ended ones too), sign-in codes asked for,
alerts about them and their audit events. Secrets are left out (stored only as hashes
or encrypted, they say nothing to the person), and so is anything about anyone else:
another person who acted on them (an admin ending their session) appears as
"administrator" or "another person", never by id, and that person's IP address is not
included.

**Erasure** (:func:`erase`): the person's account, devices, sessions, sign-in codes,
"This wasn't me" links, authenticator (TOTP) secret and finished webhook deliveries
about them are deleted; the user row goes too, so the email address can be used again.
Live sessions are first ended with reason ``user_erased`` through the normal path, so
their ``session.ended`` events, and the webhook deliveries queued for them, tell
integrations which sessions to forget (those deliveries carry the real ids, since a
receiver cannot act on a pseudonym). The audit trail keeps every event, with the
person's identity replaced by a pseudonym (:func:`app.core.audit.pseudonym`): their id
(as actor or subject), their session, device and code ids, their email, their device
names, and their IP addresses cut to the network. Alerts about them are kept the same
way. The chain still verifies (see app.core.audit), and the erasure itself is recorded
as ``user.erased`` with the pseudonym, never the old id or email.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from app.core import audit, events
from app.core.errors import N_, ValidationError
from app.core.events import Origin
from app.core.sessions import Current, end_session
from app.core.tenancy import tenant_user
from app.models import (
    Alert,
    Base,
    Challenge,
    Device,
    Event,
    NotMeToken,
    RecoveryCode,
    Tenant,
    User,
    UserSession,
    WebhookDelivery,
    WebhookEndpoint,
)

FORMAT = "holdfast-personal-data/1"
#: detail keys whose values are personal in events about the person: device names, the
#: email, and alert summaries (free text that may name a place or an address)
PERSONAL_DETAIL_KEYS = frozenset({"email", "name", "old", "new", "device_name", "summary"})


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- export -------------------------------------------------------------------------------


def export(db: Session, user: User, *, now: datetime) -> dict[str, Any]:
    """All of ``user``'s data as a JSON-ready dict (see the module docstring)."""
    tenant = db.get_one(Tenant, user.tenant_id)
    devices = list(
        db.scalars(select(Device).where(Device.user_id == user.id).order_by(Device.first_seen_at))
    )
    sessions = list(
        db.scalars(
            select(UserSession)
            .where(UserSession.user_id == user.id)
            .order_by(UserSession.created_at, UserSession.id)
        )
    )
    challenges = list(
        db.scalars(select(Challenge).where(_challenges_of(user)).order_by(Challenge.created_at))
    )
    recovery = list(
        db.scalars(
            select(RecoveryCode)
            .where(RecoveryCode.user_id == user.id)
            .order_by(RecoveryCode.created_at, RecoveryCode.id)
        )
    )
    alerts = list(
        db.scalars(select(Alert).where(Alert.user_id == user.id).order_by(Alert.created_at))
    )
    own_sessions = {s.id for s in sessions}
    events_about = list(
        db.scalars(
            select(Event)
            .where(
                Event.tenant_id == user.tenant_id,
                or_(Event.actor_id == user.id, Event.subject_id == user.id),
            )
            .order_by(Event.at, Event.id)
        )
    )
    others = {e.actor_id for e in events_about} | {e.subject_id for e in events_about}
    others -= {user.id, None}
    admins = set(
        db.scalars(select(User.id).where(User.id.in_(others), User.role == "admin"))
        if others
        else []
    )

    def someone(person_id: str | None) -> str:
        if person_id is None:
            return "system"
        if person_id == user.id:
            return "you"
        return "administrator" if person_id in admins else "another person"

    def event_item(event: Event) -> dict[str, Any]:
        theirs = event.actor_id == user.id or (
            event.actor_id is None and event.subject_id == user.id
        )
        about_them = event.subject_id in (user.id, None)
        item: dict[str, Any] = {
            "at": _iso(event.at),
            "kind": event.kind,
            "by": someone(event.actor_id),
            "to": someone(event.subject_id) if event.subject_id else None,
        }
        if event.session_id in own_sessions:
            item["sessionId"] = event.session_id
        if theirs and event.ip:
            item["ip"] = event.ip
        if about_them:
            item["details"] = event.details
        return item

    return {
        "format": FORMAT,
        "exportedAt": _iso(now),
        "person": {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "disabled": user.disabled,
            "createdAt": _iso(user.created_at),
            "lastSignInAt": _iso(user.last_sign_in_at),
            "authenticatorApp": {
                "enabled": user.totp_enabled_at is not None,
                "enabledAt": _iso(user.totp_enabled_at),
            },
            # when each recovery code was made and used; the codes themselves are kept
            # only as hashes, and say nothing to the person
            "recoveryCodes": [
                {"createdAt": _iso(r.created_at), "usedAt": _iso(r.used_at)} for r in recovery
            ],
        },
        "organisation": {"id": tenant.id, "name": tenant.name},
        "devices": [
            {
                "id": d.id,
                "name": d.name,
                "displayName": d.display_name,
                "kind": d.kind,
                "os": d.os,
                "browser": d.browser,
                "firstSeenAt": _iso(d.first_seen_at),
                "lastSeenAt": _iso(d.last_seen_at),
                "trustedUntil": _iso(d.trusted_until),
            }
            for d in devices
        ],
        "sessions": [
            {
                "id": s.id,
                "deviceId": s.device_id,
                "createdAt": _iso(s.created_at),
                "lastSeenAt": _iso(s.last_seen_at),
                "idleDeadline": _iso(s.idle_deadline),
                "absoluteDeadline": _iso(s.absolute_deadline),
                "endedAt": _iso(s.ended_at),
                "endReason": s.end_reason,
                "ip": s.ip,
                "userAgent": s.user_agent,
                "location": s.location,
            }
            for s in sessions
        ],
        "signInCodes": [
            {
                "id": c.id,
                "email": c.email,
                "requestedAt": _iso(c.created_at),
                "expiresAt": _iso(c.expires_at),
                "usedAt": _iso(c.consumed_at),
                "wrongAttempts": c.attempts,
                "ip": c.ip,
            }
            for c in challenges
        ],
        "alerts": [
            {
                "id": a.id,
                "createdAt": _iso(a.created_at),
                "kind": a.kind,
                "severity": a.severity,
                "status": a.status,
                "sessionId": a.session_id if a.session_id in own_sessions else None,
                "ip": a.ip,
                "details": a.details,
            }
            for a in alerts
        ],
        "events": [event_item(e) for e in events_about],
    }


def record_export(
    db: Session, current: Current, *, now: datetime, origin: Origin
) -> dict[str, Any]:
    """The export of the signed-in person, with a ``user.data_exported`` event."""
    data = export(db, current.user, now=now)
    events.record(
        db,
        "user.data_exported",
        now=now,
        tenant_id=current.tenant.id,
        origin=origin,
        actor_id=current.user.id,
        subject_id=current.user.id,
        session_id=current.session.id,
    )
    return data


# --- erasure ------------------------------------------------------------------------------


@dataclass
class Erasure:
    """What an erasure did."""

    pseudonym: str
    #: rows deleted, per table
    deleted: dict[str, int] = field(default_factory=dict)
    events_pseudonymised: int = 0
    alerts_pseudonymised: int = 0


@dataclass
class Preview:
    """What erasing a person would touch (for the confirm page)."""

    user: User
    live_sessions: int
    sessions: int
    devices: int
    events: int


def preview(db: Session, user_id: str) -> Preview:
    """The person and counts of what erasure deletes or pseudonymises; NotFound for a
    person of another tenant."""
    user = tenant_user(db, user_id)
    sessions = list(db.scalars(select(UserSession).where(UserSession.user_id == user.id)))
    return Preview(
        user=user,
        live_sessions=sum(1 for s in sessions if s.ended_at is None),
        sessions=len(sessions),
        devices=len(list(db.scalars(select(Device.id).where(Device.user_id == user.id)))),
        events=len(
            list(
                db.scalars(
                    select(Event.id).where(
                        Event.tenant_id == user.tenant_id,
                        or_(Event.actor_id == user.id, Event.subject_id == user.id),
                    )
                )
            )
        ),
    )


def _scrub(value: Any, key: str, targets: set[str], personal: bool) -> Any:
    """``value`` with every string in ``targets`` (and, when ``personal``, every string
    under a personal key) replaced by its pseudonym."""
    if isinstance(value, dict):
        return {
            name: (
                _mask_all(item, key)
                if personal and name in PERSONAL_DETAIL_KEYS
                else _scrub(item, key, targets, personal)
            )
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_scrub(item, key, targets, personal) for item in value]
    if isinstance(value, str) and value in targets:
        return audit.pseudonym(key, value)
    return value


def _mask_all(value: Any, key: str) -> Any:
    if isinstance(value, str):
        return audit.pseudonym(key, value)
    if isinstance(value, dict):
        return {name: _mask_all(item, key) for name, item in value.items()}
    if isinstance(value, list):
        return [_mask_all(item, key) for item in value]
    return value


def erase(db: Session, admin: Current, user_id: str, *, now: datetime, origin: Origin) -> Erasure:
    """Erase a person of the admin's tenant (see the module docstring). Raises NotFound
    (not a person of this tenant) or ValidationError (the admin's own account: another
    admin must do it, so a tenant is never left without the admin who asked)."""
    person = tenant_user(db, user_id)
    if person.id == admin.user.id:
        raise ValidationError(
            N_("You cannot erase your own account. Ask another admin to do it."), field="user"
        )
    chain = audit.chain_of(person.tenant_id)
    key = audit.chain_key(db, chain)
    alias = audit.pseudonym(key, person.id)
    result = Erasure(pseudonym=alias)

    # Live sessions end through the normal path first: their events and webhooks tell
    # integrations, with the real ids, which sessions are gone.
    for session in db.scalars(
        select(UserSession).where(UserSession.user_id == person.id, UserSession.ended_at.is_(None))
    ).all():
        end_session(db, session, "user_erased", now=now, actor_id=admin.user.id, origin=origin)
    db.flush()

    session_ids = set(db.scalars(select(UserSession.id).where(UserSession.user_id == person.id)))
    devices = list(db.scalars(select(Device).where(Device.user_id == person.id)))
    challenge_ids = set(db.scalars(select(Challenge.id).where(_challenges_of(person))))
    targets = {person.id, person.email, *session_ids, *challenge_ids}
    targets.update(d.id for d in devices)
    targets.update(d.name for d in devices if d.name)

    # The audit trail: the same events, pseudonymous. Rows are rewritten with Core
    # updates; events recorded above and not yet sealed keep their real ids in memory
    # for their webhook bodies, and seal to the same hash either way (app.core.audit).
    rows = db.execute(
        select(
            Event.id,
            Event.actor_id,
            Event.subject_id,
            Event.session_id,
            Event.ip,
            Event.details,
        ).where(
            Event.tenant_id == person.tenant_id,
            or_(Event.actor_id == person.id, Event.subject_id == person.id),
        )
    ).all()
    for row in rows:
        values: dict[str, Any] = {}
        if row.actor_id == person.id:
            values["actor_id"] = alias
        if row.subject_id == person.id:
            values["subject_id"] = alias
        if row.session_id in session_ids:
            values["session_id"] = audit.pseudonym(key, row.session_id)
        if row.actor_id == person.id or (row.actor_id is None and row.subject_id == person.id):
            values["ip"] = audit.network(row.ip)
        details = _scrub(row.details or {}, key, targets, row.subject_id == person.id)
        if details != row.details:
            values["details"] = details
        db.execute(
            update(Event)
            .where(Event.id == row.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    result.events_pseudonymised = len(rows)

    alerts = list(
        db.scalars(
            select(Alert).where(
                or_(
                    Alert.user_id == person.id,
                    Alert.acknowledged_by == person.id,
                    Alert.resolved_by == person.id,
                )
            )
        )
    )
    for alert in alerts:
        if alert.user_id == person.id:
            alert.user_id = alias
            alert.ip = audit.network(alert.ip)
            if alert.session_id in session_ids:
                alert.session_id = audit.pseudonym(key, alert.session_id)
            alert.details = _scrub(alert.details or {}, key, targets, True)
        if alert.acknowledged_by == person.id:
            alert.acknowledged_by = alias
        if alert.resolved_by == person.id:
            alert.resolved_by = alias
    result.alerts_pseudonymised = len(alerts)
    db.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.created_by == person.id)
        .values(created_by=alias)
        .execution_options(synchronize_session=False)
    )

    deleted = result.deleted
    event_ids = [row.id for row in rows]
    deleted["webhook_deliveries"] = 0
    for first in range(0, len(event_ids), 500):
        deleted["webhook_deliveries"] += db.execute(
            delete(WebhookDelivery)
            .where(
                WebhookDelivery.event_id.in_(event_ids[first : first + 500]),
                WebhookDelivery.status != "pending",
            )
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    deleted["not_me_tokens"] = _delete(db, NotMeToken, NotMeToken.user_id == person.id)
    deleted["sessions"] = _delete(db, UserSession, UserSession.user_id == person.id)
    deleted["devices"] = _delete(db, Device, Device.user_id == person.id)
    deleted["challenges"] = _delete(db, Challenge, Challenge.id.in_(challenge_ids))
    deleted.update(_delete_other_dependants(db, person.id))
    # The user row, and with it the TOTP secret and everything else on it.
    db.delete(person)
    db.flush()
    deleted["users"] = 1

    events.record(
        db,
        "user.erased",
        now=now,
        tenant_id=person.tenant_id,
        origin=origin,
        actor_id=admin.user.id,
        subject_id=alias,
        session_id=admin.session.id,
        pseudonym=alias,
        deleted=dict(deleted),
        events_pseudonymised=result.events_pseudonymised,
    )
    return result


def _delete(db: Session, model: Any, condition: Any) -> int:
    return int(
        db.execute(
            delete(model).where(condition).execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    )


#: tables erasure handles by name; any other table pointing at users is emptied of the
#: person's rows generically, so a table added later cannot block (or survive) an erasure
HANDLED = frozenset({"sessions", "devices", "challenges", "not_me_tokens"})


def _challenges_of(person: User) -> Any:
    """The sign-in codes that are the person's: the ones bound to this account, and the
    ones asked for the address without naming an account (an address with several
    accounts, or none at the time). Codes bound to the address's account in another
    tenant belong to that account, and are left to it."""
    return or_(
        Challenge.user_id == person.id,
        and_(Challenge.email == person.email, Challenge.user_id.is_(None)),
    )


def _delete_other_dependants(db: Session, user_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in reversed(Base.metadata.sorted_tables):
        if table.name in HANDLED:
            continue
        for foreign_key in table.foreign_keys:
            if foreign_key.column.table.name == "users":
                removed = db.execute(delete(table).where(foreign_key.parent == user_id)).rowcount  # type: ignore[attr-defined]
                counts[table.name] = counts.get(table.name, 0) + int(removed)
    return counts
