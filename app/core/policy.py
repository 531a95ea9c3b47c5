"""A tenant's session policy: what may be set, the allowed ranges, and changing it.

Every field has one entry in :data:`FIELDS` (its label, its name in the JSON API and its
allowed range), so the admin form, the API and the validation never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy import update as sa_update
from sqlalchemy.orm import Session

from app.core import events
from app.core.errors import N_, ValidationError
from app.core.events import Origin
from app.core.sessions import DeviceFacts, policy_deadlines
from app.models import BINDING_ACTIONS, LIMIT_MODES, Device, Tenant, UserSession, UTCDateTime

MINUTE, HOUR, DAY = 60, 3600, 86400


@dataclass(frozen=True)
class Field:
    name: str
    api_name: str
    label: str
    kind: type
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    #: a length of time in seconds (forms show it in minutes, hours or days)
    duration: bool = False

    def describe_range(self) -> str:
        if self.choices:
            return " or ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        if self.duration:
            return f"{_duration(self.low)} to {_duration(self.high)}"
        return f"{self.low} to {self.high} (0 means no limit)"


FIELDS: tuple[Field, ...] = (
    Field(
        "idle_timeout",
        "idleTimeout",
        N_("Idle timeout"),
        int,
        MINUTE,
        30 * DAY,
        help=N_(
            "A session with no activity for this long ends. The page warns two minutes "
            "before and offers to stay signed in."
        ),
        duration=True,
    ),
    Field(
        "absolute_lifetime",
        "absoluteLifetime",
        N_("Absolute lifetime"),
        int,
        5 * MINUTE,
        30 * DAY,
        help=N_("No session lives longer than this after sign-in, however active."),
        duration=True,
    ),
    Field(
        "extend_on_activity",
        "extendOnActivity",
        N_("Extend on activity"),
        bool,
        help=N_(
            "Activity moves the idle deadline forward, never past the absolute lifetime. "
            "Off: sessions end one idle timeout after sign-in."
        ),
    ),
    Field(
        "trusted_lifetime",
        "trustedLifetime",
        N_("Trusted device lifetime"),
        int,
        HOUR,
        365 * DAY,
        help=N_(
            "How long trust lasts once a person chooses “Trust this device”. "
            "Shortening it also shortens trust already given."
        ),
        duration=True,
    ),
    Field(
        "trusted_idle_timeout",
        "trustedIdleTimeout",
        N_("Trusted device idle timeout"),
        int,
        MINUTE,
        30 * DAY,
        help=N_(
            "A session on a trusted device ends after this long without activity, instead "
            "of the idle timeout (the longer of the two applies; never past the session's "
            "absolute lifetime). 8 hours keeps a tablet used through a shift signed in."
        ),
        duration=True,
    ),
    Field(
        "trusted_outlives_absolute",
        "trustedOutlivesAbsolute",
        N_("Trusted devices outlive the absolute lifetime"),
        bool,
        help=N_(
            "Sessions on a trusted device may last up to the trusted device lifetime "
            "instead of the absolute lifetime."
        ),
    ),
    Field(
        "max_sessions_per_user",
        "maxSessionsPerUser",
        N_("Sessions per person"),
        int,
        0,
        1000,
        help=N_("Live sessions one person may hold at once; 0 means no limit."),
    ),
    Field(
        "limit_mode",
        "limitMode",
        N_("At the limit"),
        str,
        choices=LIMIT_MODES,
        help=N_(
            "evict_oldest ends the least recently active session; deny asks the person "
            "which session to end."
        ),
    ),
    Field(
        "notify_new_device",
        "notifyNewDevice",
        N_("Email on new device"),
        bool,
        help=N_("Email the person when they sign in on a device not seen before."),
    ),
    Field(
        "ip_change",
        "ipChange",
        N_("When a session's IP address changes"),
        str,
        choices=BINDING_ACTIONS,
        help=N_(
            "allow ignores it; flag raises an alert; end ends the session (a mobile "
            "person changes networks often: flag is the usual choice)."
        ),
    ),
    Field(
        "ua_change",
        "uaChange",
        N_("When a session's browser changes"),
        str,
        choices=BINDING_ACTIONS,
        help=N_("allow ignores it; flag raises an alert; end ends the session."),
    ),
    Field(
        "require_totp_for_admins",
        "requireTotpForAdmins",
        N_("Admins must use a passkey or an authenticator app"),
        bool,
        help=N_(
            "Admins sign in with a passkey, or with the emailed code and then their app's "
            "code (or a recovery code). An admin with neither adds an app right after the "
            "emailed code; one signed in before this was turned on adds one before any admin "
            "page."
        ),
    ),
    Field(
        "allow_passkeys",
        "allowPasskeys",
        N_("Allow passkeys"),
        bool,
        help=N_("People may add passkeys and sign in with them, with no emailed code."),
    ),
    Field(
        "require_passkeys",
        "requirePasskeys",
        N_("Require passkeys for everyone"),
        bool,
        help=N_(
            "Someone with a passkey must sign in with it (or, with an authenticator app, "
            "use a recovery code); the emailed code then only lets people add their first "
            "passkey."
        ),
    ),
    Field(
        "notify_high_alerts",
        "notifyHighAlerts",
        N_("Email admins about high alerts"),
        bool,
        help=N_("Send every high-severity alert to the tenant's admins by email."),
    ),
)
BY_NAME = {field.name: field for field in FIELDS}
BY_API_NAME = {field.api_name: field for field in FIELDS}


def as_dict(tenant: Tenant) -> dict[str, Any]:
    """The policy with the JSON API's names."""
    return {field.api_name: getattr(tenant, field.name) for field in FIELDS}


def check_field(name: str, value: Any) -> Any:
    """One setting checked against its own range (no cross-field rules). Raises
    ValidationError naming the field and its allowed range."""
    field = BY_NAME.get(name)
    if field is None:
        raise ValidationError(
            N_("Unknown policy setting %(name)s."), words={"name": repr(name)}, field=name
        )
    return _check(field, value)


def validate(changes: dict[str, Any], tenant: Tenant) -> dict[str, Any]:
    """The changes (by model field name) checked against the ranges and each other.
    Raises ValidationError naming the first bad field and its allowed range."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        field = BY_NAME.get(name)
        if field is None:
            raise ValidationError(
                N_("Unknown policy setting %(name)s."), words={"name": repr(name)}, field=name
            )
        clean[name] = _check(field, value)
    merged = {field.name: getattr(tenant, field.name) for field in FIELDS} | clean
    if merged["idle_timeout"] > merged["absolute_lifetime"]:
        field = BY_NAME["idle_timeout" if "idle_timeout" in clean else "absolute_lifetime"]
        raise ValidationError(
            N_("Idle timeout cannot be longer than the absolute lifetime."), field=field.api_name
        )
    return clean


def update(
    db: Session,
    tenant: Tenant,
    changes: dict[str, Any],
    *,
    now: datetime,
    actor_id: str | None,
    origin: Origin = events.SYSTEM,
) -> Tenant:
    """Apply ``changes`` (all or nothing) and audit the old and new values. Existing
    sessions follow a tighter policy on their next request (see app.core.sessions); a
    longer idle timeout (or trusted idle timeout) reaches every live session at once (its
    stored idle deadline moves, see :func:`_stretch_idle_deadlines`; the event counts them as
    ``idle_extended``); a shorter trusted-device lifetime also shortens trust already
    given: no device stays trusted past now + the new lifetime (``trust_capped``)."""
    clean = validate(changes, tenant)
    diff = {
        name: {"old": getattr(tenant, name), "new": value}
        for name, value in clean.items()
        if getattr(tenant, name) != value
    }
    for name, value in clean.items():
        setattr(tenant, name, value)
    stretched = 0
    longer = [diff.get(name) for name in ("idle_timeout", "trusted_idle_timeout")]
    if any(change and change["new"] > change["old"] for change in longer):
        stretched = _stretch_idle_deadlines(db, tenant, now)
    capped = 0
    shorter = diff.get("trusted_lifetime")
    if shorter and shorter["new"] < shorter["old"]:
        cap = now + timedelta(seconds=tenant.trusted_lifetime)
        capped = db.execute(
            sa_update(Device)
            .where(Device.tenant_id == tenant.id, Device.trusted_until > cap)
            .values(trusted_until=cap)
            .execution_options(synchronize_session="fetch")
        ).rowcount  # type: ignore[attr-defined]
    if diff:
        details: dict[str, Any] = {"changes": diff}
        if capped:
            details["trust_capped"] = capped
        if stretched:
            details["idle_extended"] = stretched
        events.record(
            db,
            "policy.changed",
            now=now,
            tenant_id=tenant.id,
            origin=origin,
            actor_id=actor_id,
            **details,
        )
    db.flush()
    return tenant


def _stretch_idle_deadlines(db: Session, tenant: Tenant, now: datetime) -> int:
    """Give the tenant's live sessions the longer idle timeout now in force (the trusted
    idle timeout on a trusted device, app.core.sessions.idle_timeout); returns how many
    moved.

    The hot path judges a session by the earlier of its stored idle deadline and
    ``last_seen_at`` (or, for a session that never slides, ``created_at``) plus the idle
    timeout in force, so a shorter timeout applies on the next request by itself. A
    longer one has to move the stored deadline, and it is moved here, at the change,
    rather than read past on the hot path: only sessions still alive now move, so one
    that had already run out under the old timeout (with nobody there to mark it ended)
    stays over, and every query that filters on the stored deadline (lists, counts,
    reports, retention) sees the same live sessions as the hot path. Each moves to its
    deadline under the new policy (app.core.sessions.deadlines), never earlier than it
    was. Sessions whose sliding the tenant switched off keep their frozen deadline.

    ``last_seen_at`` is written at most once a touch interval, so the new deadline can
    be up to that interval earlier than a perfectly exact one; the session's next
    written request slides it as usual."""
    rows = db.execute(
        select(
            UserSession.id,
            UserSession.created_at,
            UserSession.last_seen_at,
            UserSession.extend_on_activity,
            UserSession.idle_deadline,
            UserSession.absolute_deadline,
            UserSession.device_id,
            Device.trusted_until,
        )
        .join(Device, Device.id == UserSession.device_id)
        .where(
            UserSession.tenant_id == tenant.id,
            UserSession.ended_at.is_(None),
            UserSession.idle_deadline > now,
            UserSession.absolute_deadline > now,
        )
    ).all()
    moves = []
    for row in rows:
        if row.extend_on_activity and not tenant.extend_on_activity:
            continue  # frozen where it stands (see app.core.sessions)
        device = DeviceFacts(row.device_id, row.trusted_until)
        deadline, _absolute = policy_deadlines(row, tenant, device, now)
        if deadline > row.idle_deadline:
            moves.append({"session_id": row.id, "deadline": deadline})
    if moves:
        sessions = UserSession.__table__  # Core: executemany, one statement for all rows
        assert isinstance(sessions, Table)
        db.execute(
            sa_update(sessions)
            .where(sessions.c.id == bindparam("session_id"))
            .values(idle_deadline=bindparam("deadline", type_=UTCDateTime()))
            .execution_options(all_tenants=True),  # by primary key, rows of this tenant
            moves,
        )
    return len(moves)


def _check(field: Field, value: Any) -> Any:
    # The label and range are English here (the API's words); a page that shows this
    # message says them in its own language (app.web.admin_policy.out_of_range).
    problem = ValidationError(
        N_("%(label)s must be %(range)s."),
        words={"label": field.label, "range": field.describe_range()},
        field=field.api_name,
    )
    if field.kind is bool:
        if not isinstance(value, bool):
            raise problem
        return value
    if field.kind is str:
        if value not in field.choices:
            raise problem
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise problem
    assert field.low is not None and field.high is not None
    if not field.low <= value <= field.high:
        raise problem
    return value


def describe_duration(seconds: int) -> str:
    """A duration as people say it: "30 minutes", "12 hours", "30 days"."""
    return _duration(seconds)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("day", DAY), ("hour", HOUR), ("minute", MINUTE)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"
