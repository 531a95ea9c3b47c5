"""Suspicious-activity alerts: raising one (with its audit event) and mailing a tenant's
admins about the high ones. The rules that raise them live with what they watch:
app.core.sign_in_rules (new device, new country, impossible travel),
app.core.request_rules (a replayed token, a mid-session change of address or browser),
app.core.code_checks (bursts of wrong codes, the slow-down) and app.core.not_me (the
person disowns a sign-in). What admins do with them: app.core.alert_inbox.

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
code_sign_in_slowed    100 wrong codes in a row for an address: its codes wait a     high
                       growing delay after each further wrong code (30 s,
                       doubling, at most an hour); a currently trusted device of
                       the person is exempt
session_replay         an ended session's token used again after its device was     medium
                       told it had ended
ip_changed,            a session's IP, or its browser or OS family, changes          low /
ua_changed             mid-session, and the tenant's policy says ``flag`` (alert     medium
                       once per session) or ``end`` (end it, reason suspicious)
sign_in_disowned       the person followed "This wasn't me": that session ended,    high
                       the device no longer trusted
=====================  ==========================================================  ========

High alerts are emailed to the tenant's admins (policy ``notify_high_alerts``, on by
default).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import events
from app.core.deployment import deployment
from app.core.errors import N_
from app.core.events import Origin
from app.models import Alert, Tenant, User
from app.outbox import queue_mail

SEVERITIES = ("low", "medium", "high")
#: what an admin reads for each kind of alert (English; pages and mails translate it)
TITLES = {
    "new_device": N_("Sign-in from a new device"),
    "new_country": N_("Sign-in from a new country"),
    "impossible_travel": N_("Impossible travel"),
    "code_burst": N_("Burst of wrong sign-in codes"),
    "code_sign_in_slowed": N_("Code sign-in slowed after many wrong codes"),
    "session_replay": N_("Ended session used again"),
    "ip_changed": N_("Session IP address changed"),
    "ua_changed": N_("Session browser changed"),
    "sign_in_disowned": N_("Person reported a sign-in that was not them"),
    "passkey_cloned": N_("Copied passkey used"),
}
ADMIN_ALERTS_PATH = "/admin/alerts"


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
    who = person.email if person else None  # the mail says "no particular person"
    for admin in admins:
        queue_mail(
            db,
            "high_alert",
            to=admin.email,
            values={
                "product": settings.product,
                "title": title,
                "summary": alert.details.get("summary", ""),
                "who": who,
                "at": now,
                "ip": alert.ip,
                "link": settings.link(ADMIN_ALERTS_PATH),
                "tenant_name": tenant.name,
            },
            tenant_id=tenant.id,
            now=now,
            language=admin.language,
        )
