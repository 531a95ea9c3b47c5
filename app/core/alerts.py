"""Suspicious activity: the rules, the alerts they raise, and what admins do with them.

Each rule raises an :class:`~app.models.Alert` and writes an ``alert.raised`` audit event in
the same transaction. High alerts are emailed to the tenant's admins (policy
``notify_high_alerts``, on by default).

=====================  ==========================================================  ========
kind                   when                                                        severity
=====================  ==========================================================  ========
new_device             sign-in on a device not seen before (not the person's         low
                       first device); the person gets an email with a single-use
                       "This wasn't me" link (policy ``notify_new_device``)
new_country            sign-in from a country none of the person's last 50           medium
                       sign-ins came from (needs HOLDFAST_GEOIP_DB)
impossible_travel      the previous located sign-in is over 500 km away and          high
                       reaching here since would need more than 900 km/h
code_burst             10 wrong codes for one account within 15 minutes            medium
                       (per account, whatever the addresses)
code_sign_in_slowed    100 wrong codes in a row: code sign-in for the account is     high
                       refused for a growing delay after each further wrong code
                       (30 s, doubling, at most an hour); a sign-in from a
                       currently trusted device of the person is exempt
session_replay         an ended session's token used again after its device was     medium
                       told it had ended (see :func:`ended_token_used`)
ip_changed,            a session's IP, or its browser or OS family, changes          low /
ua_changed             mid-session, and the tenant's policy says ``flag`` (alert     medium
                       once per session) or ``end`` (end it, reason suspicious)
sign_in_disowned       the person followed "This wasn't me": that session ended,    high
                       the device no longer trusted
=====================  ==========================================================  ========

Admins acknowledge (someone is looking) and resolve alerts; both are audited.

The rules that send mail need the deployment's public URL (links) and may use a GeoIP
database: the app makes one :class:`Deployment` at start and hands it to every database
session it opens (app.Services.session, with :func:`configure`).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased

from app import geo
from app.core import events
from app.core.admin import decode_cursor, encode_cursor
from app.core.errors import Forbidden, InvalidSession, NotFound, ValidationError
from app.core.events import Origin
from app.crypto import Hasher
from app.devices import describe
from app.mail import Message
from app.models import ALERT_STATUSES, Alert, Device, NotMeToken, Tenant, User, UserSession
from app.outbox import queue_mail

if TYPE_CHECKING:
    from app.core.sessions import Current
    from app.core.signin import SignIn

SEVERITIES = ("low", "medium", "high")
#: what an admin reads for each kind of alert
TITLES = {
    "new_device": "Sign-in from a new device",
    "new_country": "Sign-in from a new country",
    "impossible_travel": "Impossible travel",
    "code_burst": "Burst of wrong sign-in codes",
    "code_sign_in_slowed": "Code sign-in slowed after many wrong codes",
    "session_replay": "Ended session used again",
    "ip_changed": "Session IP address changed",
    "ua_changed": "Session browser changed",
    "sign_in_disowned": "Person reported a sign-in that was not them",
}
#: status filters the alert list understands ("unresolved" = open or acknowledged)
STATUS_FILTERS = ("unresolved", *ALERT_STATUSES, "all")
MAX_PAGE = 200

NOT_ME_LIFETIME = timedelta(days=7)
#: the public path of a "This wasn't me" link (served by app.web.security)
NOT_ME_PATH = "/account/not-me/{token}"
ADMIN_ALERTS_PATH = "/admin/alerts"


TRAVEL_KMH = 900.0
#: closer than this is within a city database's error: never "impossible travel"
TRAVEL_MIN_KM = 500.0
HISTORY = 50

#: uses of an ended token this soon after its device was told are that device (parallel
#: requests, other tabs), not a replay
REPLAY_GRACE = timedelta(seconds=60)


# --- deployment settings ---------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """What the rules need to know about the deployment."""

    base_url: str = ""
    product: str = "Holdfast"
    locator: geo.Locator | None = None

    def link(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @classmethod
    def from_config(
        cls, *, base_url: str, product: str = "Holdfast", geoip_db: str | None = None
    ) -> Deployment:
        """The public URL (for links in mail), the product name and the MaxMind database
        to locate addresses with (None: no location rules)."""
        return cls(base_url.rstrip("/"), product, geo.locator(geoip_db))


_DEFAULT = Deployment()


def configure(db: Session, deployment: Deployment) -> None:
    """Tell the rules run on ``db`` about the deployment."""
    db.info["deployment"] = deployment


def deployment(db: Session) -> Deployment:
    return db.info.get("deployment") or _DEFAULT


def locate(db: Session, ip: str) -> geo.Place | None:
    locator = deployment(db).locator
    return locator.lookup(ip) if locator is not None and ip else None


# --- raising alerts ----------------------------------------------------------------------


def raise_alert(
    db: Session,
    kind: str,
    severity: str,
    *,
    tenant_id: str,
    now: datetime,
    summary: str,
    user_id: str | None = None,
    session_id: str | None = None,
    origin: Origin = events.SYSTEM,
    dedupe_key: str | None = None,
    **details: Any,
) -> Alert | None:
    """Record an alert and its ``alert.raised`` event; email the tenant's admins when it
    is high and the policy says so. With ``dedupe_key``, at most one alert ever carries
    that key (across nodes too): a second call answers None and records nothing."""
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    alert = Alert(
        tenant_id=tenant_id,
        created_at=now,
        kind=kind,
        severity=severity,
        status="open",
        user_id=user_id,
        session_id=session_id,
        ip=origin.ip[:45],
        details={"summary": summary, **details},
        dedupe_key=dedupe_key,
    )
    if dedupe_key is not None:
        if _exists(db, dedupe_key):
            return None
        try:
            with db.begin_nested():
                db.add(alert)
        except IntegrityError:  # another request raised it first
            return None
    else:
        db.add(alert)
    db.flush()
    events.record(
        db,
        "alert.raised",
        now=now,
        tenant_id=tenant_id,
        origin=origin,
        subject_id=user_id,
        session_id=session_id,
        alert_id=alert.id,
        alert_kind=kind,
        severity=severity,
        summary=summary,
    )
    if severity == "high":
        _mail_admins(db, alert, now)
    return alert


def _exists(db: Session, dedupe_key: str) -> bool:
    return (
        db.scalar(
            select(Alert.id)
            .where(Alert.dedupe_key == dedupe_key)
            .execution_options(all_tenants=True)
        )
        is not None
    )


def _mail_admins(db: Session, alert: Alert, now: datetime) -> None:
    tenant = db.get(Tenant, alert.tenant_id)
    if tenant is None or not tenant.notify_high_alerts:
        return
    person = (
        db.scalars(
            select(User).where(User.id == alert.user_id).execution_options(all_tenants=True)
        ).one_or_none()
        if alert.user_id
        else None
    )
    admins = db.scalars(
        select(User)
        .where(User.tenant_id == alert.tenant_id, User.role == "admin", User.disabled.is_(False))
        .execution_options(all_tenants=True)
    ).all()
    settings = deployment(db)
    title = TITLES.get(alert.kind, alert.kind)
    who = person.email if person else "no particular person"
    for admin in admins:
        queue_mail(
            db,
            Message(
                to=admin.email,
                subject=f"[{settings.product}] High alert: {title} ({who})",
                text=(
                    f"{title}\n\n"
                    f"{alert.details.get('summary', '')}\n\n"
                    f"Person:  {who}\n"
                    f"When:    {now:%d %b %Y, %H:%M} UTC\n"
                    f"Address: {alert.ip or 'unknown'}\n\n"
                    f"Review, acknowledge or resolve it here:\n"
                    f"{settings.link(ADMIN_ALERTS_PATH)}\n\n"
                    f"You get this email because you are an admin of {tenant.name} and its "
                    "policy emails admins about high alerts.\n"
                ),
            ),
            tenant_id=tenant.id,
            kind="high_alert",
            now=now,
        )


# --- rules at sign-in ----------------------------------------------------------------------


def after_sign_in(
    db: Session, hasher: Hasher, result: SignIn, *, now: datetime, origin: Origin
) -> None:
    """The sign-in rules, run by :func:`app.core.signin.sign_in` once the session exists:
    store where the session is, and look for a new device, a new country and impossible
    travel."""
    user, session, device, tenant = result.user, result.session, result.device, result.tenant
    place = locate(db, origin.ip)
    if place is not None and place.label:
        session.location = place.label[:200]
    if place is not None:
        _location_rules(db, result, place, now=now, origin=origin)
    if result.new_device and _has_other_devices(db, user, device):
        label = _device_words(device)
        where = _where(origin.ip, place)
        raise_alert(
            db,
            "new_device",
            "low",
            tenant_id=tenant.id,
            now=now,
            summary=f"Signed in on {label} from {where}.",
            user_id=user.id,
            session_id=session.id,
            origin=origin,
            device_id=device.id,
        )
        if tenant.notify_new_device:
            _mail_new_device(db, hasher, result, place, now=now, origin=origin)
    db.flush()


def _has_other_devices(db: Session, user: User, device: Device) -> bool:
    """The person's very first device is not news: no alert, no email."""
    return (
        db.scalar(
            select(Device.id).where(Device.user_id == user.id, Device.id != device.id).limit(1)
        )
        is not None
    )


def _location_rules(
    db: Session, result: SignIn, place: geo.Place, *, now: datetime, origin: Origin
) -> None:
    earlier = db.scalars(
        select(UserSession)
        .where(UserSession.user_id == result.user.id, UserSession.id != result.session.id)
        .order_by(UserSession.created_at.desc())
        .limit(HISTORY)
    ).all()
    located: list[tuple[UserSession, geo.Place]] = []
    cache: dict[str, geo.Place | None] = {}
    for old in earlier:
        if old.ip not in cache:
            cache[old.ip] = locate(db, old.ip)
        found = cache[old.ip]
        if found is not None:
            located.append((old, found))
    if not located:
        return  # nothing to compare with: this sign-in is the baseline
    common: dict[str, Any] = {
        "tenant_id": result.tenant.id,
        "now": now,
        "user_id": result.user.id,
        "session_id": result.session.id,
        "origin": origin,
    }
    countries = {found.country for _old, found in located if found.country}
    if place.country and countries and place.country not in countries:
        raise_alert(
            db,
            "new_country",
            "medium",
            summary=(
                f"Signed in from {place.label or place.country} ({origin.ip}); "
                f"earlier sign-ins came from {', '.join(sorted(countries))}."
            ),
            country=place.country,
            known_countries=sorted(countries),
            **common,
        )
    previous = next(((old, found) for old, found in located if found.has_position), None)
    if previous is None or not place.has_position:
        return
    old, before = previous
    distance = geo.distance_km(before, place)
    hours = max((now - old.created_at).total_seconds(), 60.0) / 3600
    speed = distance / hours
    if distance >= TRAVEL_MIN_KM and speed > TRAVEL_KMH:
        raise_alert(
            db,
            "impossible_travel",
            "high",
            summary=(
                f"Signed in from {place.label or origin.ip} {_duration(now - old.created_at)} "
                f"after a sign-in from {before.label or old.ip}, {distance:,.0f} km away "
                f"({speed:,.0f} km/h)."
            ),
            distance_km=round(distance),
            speed_kmh=round(speed),
            previous_session_id=old.id,
            previous_ip=old.ip,
            previous_place=before.label,
            place=place.label,
            **common,
        )


def _mail_new_device(
    db: Session,
    hasher: Hasher,
    result: SignIn,
    place: geo.Place | None,
    *,
    now: datetime,
    origin: Origin,
) -> None:
    raw = secrets.token_urlsafe(32)
    db.add(
        NotMeToken(
            tenant_id=result.tenant.id,
            token_hash=_token_hash(hasher, raw),
            user_id=result.user.id,
            session_id=result.session.id,
            device_id=result.device.id,
            created_at=now,
            expires_at=now + NOT_ME_LIFETIME,
        )
    )
    settings = deployment(db)
    link = settings.link(NOT_ME_PATH.format(token=raw))
    queue_mail(
        db,
        Message(
            to=result.user.email,
            subject=f"New sign-in to your {settings.product} account",
            text=(
                "Your account was just signed in to on a device it had not been used on "
                "before.\n\n"
                f"What:  {_device_words(result.device)}\n"
                f"Where: {_where(origin.ip, place)}\n"
                f"When:  {now:%d %b %Y, %H:%M} UTC\n\n"
                "If this was you, there is nothing to do.\n\n"
                "If this wasn't you, open this link to sign that device out at once and "
                "stop trusting it:\n"
                f"{link}\n\n"
                f"The link works once, for {NOT_ME_LIFETIME.days} days. Then sign in again "
                "and check your devices; consider adding an authenticator app.\n"
            ),
        ),
        tenant_id=result.tenant.id,
        kind="new_device",
        now=now,
    )


def _device_words(device: Device) -> str:
    return f"{device.display_name} ({device.kind})"


def _where(ip: str, place: geo.Place | None) -> str:
    address = ip or "an unknown address"
    return f"{place.label} (IP {address})" if place is not None and place.label else address


def _duration(span: timedelta) -> str:
    minutes = max(1, int(span.total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{minutes // 60} hours"


# --- rules on the request path ----------------------------------------------------------


class _Seen:
    """A bounded, thread-safe set of keys this process already dealt with, so a rule that
    fires once per session costs no query on later requests."""

    def __init__(self, size: int = 10_000) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def add(self, key: str) -> None:
        with self._lock:
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)


_seen = _Seen()


def ended_token_used(db: Session, session: UserSession, *, now: datetime, origin: Origin) -> None:
    """A request came with the token of an ended session (called on check_session's
    failing path only). The first such request is the session's own device finding out:
    its answer clears the cookie, so it is noted, not alerted. After a logout the browser
    knew at once. Any use more than a minute after the device was told means someone kept
    a copy of the token: one ``session_replay`` alert per session, however often it is
    replayed. Best effort: a busy database never turns the answer into an error."""
    key = f"session_replay:{session.id}"
    if key in _seen:
        return
    if session.end_reason == "logout":
        told = session.ended_at
    else:
        told = session.token_refused_at
        if told is None:
            _best_effort(db, lambda: _note_refused(db, session, now))
            return
    if told is None or now - told <= REPLAY_GRACE:
        return

    def alert() -> None:
        raise_alert(
            db,
            "session_replay",
            "medium",
            tenant_id=session.tenant_id,
            now=now,
            summary=(
                f"The token of a session that ended ({session.end_reason}) was used again "
                f"from {origin.ip or 'an unknown address'}"
                f"{' (' + _family_words(origin.user_agent) + ')' if origin.user_agent else ''}."
            ),
            user_id=session.user_id,
            session_id=session.id,
            origin=origin,
            dedupe_key=key,
            end_reason=session.end_reason,
            ended_at=session.ended_at.isoformat() if session.ended_at else None,
            session_ip=session.ip,
        )

    if _best_effort(db, alert):
        _seen.add(key)


def _note_refused(db: Session, session: UserSession, now: datetime) -> None:
    db.execute(
        update(UserSession)
        .where(UserSession.id == session.id, UserSession.token_refused_at.is_(None))
        .values(token_refused_at=now)
        .execution_options(synchronize_session=False)
    )


def _best_effort(db: Session, write: Any) -> bool:
    """Run ``write`` in a savepoint; a locked SQLite (a read transaction that cannot take
    the write lock) skips it instead of failing the request."""
    try:
        with db.begin_nested():
            write()
    except OperationalError:
        return False
    return True


def check_binding(db: Session, current: Current, origin: Origin, *, now: datetime) -> None:
    """Mid-session change of IP or of browser/OS family, per the tenant's policy (called by
    check_session only when the IP or the raw user agent differs from the session's):
    ``allow`` ignores it, ``flag`` raises one alert per session and kind, ``end`` ends the
    session (reason suspicious, with an alert) and raises InvalidSession."""
    from app.core.sessions import END_MESSAGES, end_session

    session, tenant = current.session, current.tenant
    changes: list[tuple[str, str, str]] = []  # (kind, action, words)
    if tenant.ip_change != "allow" and origin.ip != session.ip:
        changes.append(
            ("ip_changed", tenant.ip_change, f"IP changed from {session.ip} to {origin.ip}")
        )
    if tenant.ua_change != "allow" and origin.user_agent != session.user_agent:
        before, after = _family(session.user_agent), _family(origin.user_agent)
        if before != after:
            changes.append(
                (
                    "ua_changed",
                    tenant.ua_change,
                    f"browser changed from {_family_words(session.user_agent)} to "
                    f"{_family_words(origin.user_agent)}",
                )
            )
    if not changes:
        return
    ending = any(action == "end" for _kind, action, _words in changes)
    for kind, action, words in changes:
        key = f"{kind}:{session.id}"
        if (action != "end" and ending) or key in _seen:
            continue  # an ending alert says it all; a flag is raised once per session

        def alert(
            kind: str = kind, action: str = action, words: str = words, key: str = key
        ) -> None:
            raise_alert(
                db,
                kind,
                "medium" if action == "end" or kind == "ua_changed" else "low",
                tenant_id=tenant.id,
                now=now,
                summary=(
                    f"Mid-session, the {words}; "
                    + ("the session was ended." if action == "end" else "the session goes on.")
                ),
                user_id=session.user_id,
                session_id=session.id,
                origin=origin,
                dedupe_key=key,
                action=action,
                session_ip=session.ip,
                session_user_agent=session.user_agent,
                user_agent=origin.user_agent,
            )

        if action == "end":
            alert()
        elif _best_effort(db, alert):
            _seen.add(key)
    if ending:
        end_session(db, session, "suspicious", now=now, origin=origin)
        raise InvalidSession(END_MESSAGES["suspicious"], reason="suspicious")


def _family(user_agent: str) -> tuple[str, str]:
    info = describe(user_agent or "")
    return info.browser, info.os


def _family_words(user_agent: str) -> str:
    browser, os_name = _family(user_agent)
    if browser and os_name:
        return f"{browser} on {os_name}"
    return browser or os_name or "an unknown browser"


# --- "This wasn't me" ---------------------------------------------------------------------


@dataclass
class NotMeReport:
    """What a "This wasn't me" link is about."""

    token: NotMeToken
    user: User
    session: UserSession
    device: Device
    #: set once acted on: the session was ended by this report (False: it had ended)
    ended: bool = False
    alert: Alert | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _token_hash(hasher: Hasher, raw: str) -> str:
    return hasher.hash("not-me", raw)


def find_not_me(db: Session, hasher: Hasher, raw: str, *, now: datetime) -> NotMeReport:
    """The sign-in a link is about. Raises NotFound (unknown link), or ValidationError
    (used already, or expired) with a message for the person."""
    if not isinstance(raw, str) or not 20 <= len(raw) <= 100:
        raise NotFound("This link is not valid. Sign in and check your devices instead.")
    row = db.execute(
        select(NotMeToken, User, UserSession, Device)
        .join(User, User.id == NotMeToken.user_id)
        .join(UserSession, UserSession.id == NotMeToken.session_id)
        .join(Device, Device.id == NotMeToken.device_id)
        .where(NotMeToken.token_hash.in_(hasher.candidates("not-me", raw)))
        .execution_options(all_tenants=True)
    ).one_or_none()
    if row is None:
        raise NotFound("This link is not valid. Sign in and check your devices instead.")
    token, user, session, device = row
    if token.used_at is not None:
        raise ValidationError(
            "This link was used already: that sign-in was ended then. "
            "Sign in and check your devices."
        )
    if now >= token.expires_at:
        raise ValidationError(
            "This link has expired. Sign in and check your devices: end any session you "
            "do not recognise there."
        )
    return NotMeReport(token, user, session, device)


def disown_sign_in(
    db: Session, hasher: Hasher, raw: str, *, now: datetime, origin: Origin
) -> NotMeReport:
    """The person says a new-device sign-in was not them: use the link up (atomically:
    it works once), end that session (reason suspicious), stop trusting that device, and
    raise a high alert. Raises like :func:`find_not_me`."""
    from app.core.sessions import end_session

    report = find_not_me(db, hasher, raw, now=now)
    used = db.execute(
        update(NotMeToken)
        .where(NotMeToken.id == report.token.id, NotMeToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False, all_tenants=True)
    ).rowcount  # type: ignore[attr-defined]
    if used != 1:
        raise ValidationError(
            "This link was used already: that sign-in was ended then. "
            "Sign in and check your devices."
        )
    user, session, device = report.user, report.session, report.device
    report.ended = end_session(db, session, "suspicious", now=now, actor_id=user.id, origin=origin)
    if device.is_trusted(now):
        old = device.trusted_until
        device.trusted_until = now
        events.record(
            db,
            "device.untrusted",
            now=now,
            tenant_id=device.tenant_id,
            origin=origin,
            actor_id=user.id,
            subject_id=user.id,
            session_id=session.id,
            device_id=device.id,
            old=old.isoformat() if old else None,
        )
    events.record(
        db,
        "sign_in.disowned",
        now=now,
        tenant_id=user.tenant_id,
        origin=origin,
        actor_id=user.id,
        subject_id=user.id,
        session_id=session.id,
        device_id=device.id,
        session_was_live=report.ended,
    )
    report.alert = raise_alert(
        db,
        "sign_in_disowned",
        "high",
        tenant_id=user.tenant_id,
        now=now,
        summary=(
            f"{user.email} said the sign-in on {device.display_name} from "
            f"{session.ip or 'an unknown address'}"
            f"{' (' + session.location + ')' if session.location else ''} at "
            f"{session.created_at:%d %b %Y, %H:%M} UTC was not them. "
            + (
                "That session was ended and the device is no longer trusted."
                if report.ended
                else "That session had already ended; the device is no longer trusted."
            )
        ),
        user_id=user.id,
        session_id=session.id,
        origin=origin,
        device_id=device.id,
        session_ip=session.ip,
    )
    db.flush()
    return report


# --- admins: list, count, acknowledge, resolve ----------------------------------------------


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
        raise ValidationError(f"status is one of {', '.join(STATUS_FILTERS)}.", field="status")
    if severity is not None and severity not in SEVERITIES:
        raise ValidationError(f"severity is one of {', '.join(SEVERITIES)}.", field="severity")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit is 1 to {MAX_PAGE}.", field="limit")
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
        raise NotFound("No such alert")
    return AlertRow(*row)


def acknowledge(
    db: Session, current: Current, alert_id: str, *, now: datetime, origin: Origin
) -> AlertRow:
    """Mark an open alert acknowledged (someone is looking into it). Acknowledging one
    that is acknowledged or resolved changes nothing. Raises Forbidden / NotFound."""
    row = _admin_alert(db, current, alert_id)
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
    Raises Forbidden / NotFound."""
    row = _admin_alert(db, current, alert_id)
    alert = row.alert
    if alert.status != "resolved":
        alert.status = "resolved"
        alert.resolved_at = now
        alert.resolved_by = current.user.id
        _audit(db, current, alert, "alert.resolved", now, origin)
    return row


def _admin_alert(db: Session, current: Current, alert_id: str) -> AlertRow:
    if current.user.role != "admin":
        raise Forbidden("This needs a tenant admin.")
    row = tenant_alert(db, alert_id)
    if row.alert.tenant_id != current.tenant.id:
        raise NotFound("No such alert")
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
