"""Retention: what ``holdfast purge`` deletes and anonymises, per tenant.

Each tenant sets three periods (days): ``sessions_retention_days`` (default 90),
``events_retention_days`` (365) and ``ip_anonymise_days`` (30). A purge:

* deletes sessions **over** (ended, or past a deadline) for longer than the sessions
  period, then devices left with no session at all, no trust, and not seen for that long;
* deletes audit events older than the events period from the **front** of the tenant's
  chain only (it stops at the first younger event, so the chain never gets a hole) and
  stores the hash of the last deleted event as the chain's anchor, from which
  ``holdfast audit verify`` starts;
* cuts IP addresses to their network (IPv4 /24, IPv6 /48) on sessions over for longer
  than the IP period, and on events and alerts older than it. A live session keeps its
  address however old it is: session binding (IP-change alerts) compares against it;
* everywhere: deletes sign-in challenges (emailed codes and second steps) a day after
  they expired (they hold an email address and an IP, and are useless once expired),
  finished webhook deliveries and finished mail (sent, failed or expired; its body is
  already wiped) after :data:`DELIVERY_HISTORY`, rate-limit counters whose window is
  over, and runs of wrong codes left alone for a day (app.core.code_checks).

It works in batches of ``batch_size`` rows, one short transaction each (so it never holds
SQLite's write lock for long and an interrupted run just resumes next time), and every
step only selects what is still to do, so running it twice, or on two nodes at once, does
nothing more the second time. Events without a tenant follow the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, tuple_, update
from sqlalchemy.orm import Session

from app.core import audit, code_checks, events
from app.core.errors import N_, Phrase, ValidationError
from app.core.events import Origin
from app.models import (
    Alert,
    AuditHead,
    Challenge,
    Device,
    Event,
    MfaChallenge,
    OidcAssertionJti,
    OutboxMessage,
    PasskeyChallenge,
    RateCounter,
    Tenant,
    UserSession,
    WebhookDelivery,
)

DEFAULTS = {"sessions_retention_days": 90, "events_retention_days": 365, "ip_anonymise_days": 30}
LABELS = {
    "sessions_retention_days": N_("Keep ended sessions and unused devices for"),
    "events_retention_days": N_("Keep audit events for"),
    "ip_anonymise_days": N_("Anonymise IP addresses after"),
}
#: the JSON API's names for the three periods (GET/PUT /api/admin/retention)
API_NAMES = {
    "sessions_retention_days": "sessionsRetentionDays",
    "events_retention_days": "eventsRetentionDays",
    "ip_anonymise_days": "ipAnonymiseDays",
}
LOWEST, HIGHEST = 1, 3650
CHALLENGE_GRACE = timedelta(days=1)
DELIVERY_HISTORY = timedelta(days=30)
BATCH = 1000


@dataclass
class Purged:
    """Rows deleted or anonymised, per kind."""

    sessions: int = 0
    devices: int = 0
    events: int = 0
    challenges: int = 0
    deliveries: int = 0
    mail: int = 0
    rate_counters: int = 0
    code_slowdowns: int = 0
    assertion_ids: int = 0
    session_ips: int = 0
    event_ips: int = 0
    alert_ips: int = 0
    #: tenants (and the no-tenant chain) looked at
    tenants: list[str] = field(default_factory=list)

    def add(self, other: Purged) -> None:
        for item in fields(self):
            if item.name != "tenants":
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "tenants")


@dataclass(frozen=True)
class Periods:
    chain: str
    sessions_days: int
    events_days: int
    ip_days: int


def settings(tenant: Tenant) -> dict[str, int]:
    return {name: getattr(tenant, name) for name in DEFAULTS}


def update_settings(
    db: Session,
    tenant: Tenant,
    values: dict[str, Any],
    *,
    now: datetime,
    actor_id: str | None,
    origin: Origin,
) -> dict[str, dict[str, int]]:
    """Change a tenant's retention periods (whole days, 1 to 3650); writes a
    ``policy.changed`` event with the old and new values when anything changed. Raises
    ValidationError naming the first bad field; nothing is changed then."""
    clean: dict[str, int] = {}
    for name, value in values.items():
        if name not in DEFAULTS:
            raise ValidationError(
                N_("Unknown retention setting %(name)s."), words={"name": repr(name)}, field=name
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(
                N_("%(label)s: enter a whole number of days."),
                words={"label": Phrase(LABELS[name])},
                field=name,
            )
        if not LOWEST <= value <= HIGHEST:
            raise ValidationError(
                N_("%(label)s: %(low)s to %(high)s days."),
                words={"label": Phrase(LABELS[name]), "low": LOWEST, "high": HIGHEST},
                field=name,
            )
        clean[name] = value
    diff = {
        name: {"old": getattr(tenant, name), "new": value}
        for name, value in clean.items()
        if getattr(tenant, name) != value
    }
    for name, change in diff.items():
        setattr(tenant, name, change["new"])
    if diff:
        events.record(
            db,
            "policy.changed",
            now=now,
            tenant_id=tenant.id,
            origin=origin,
            actor_id=actor_id,
            changes=diff,
        )
        db.flush()
    return diff


# --- the steps, one batch each (they flush; the runner commits) ---------------------------


def over_before(cutoff: datetime) -> Any:
    """Sessions over before ``cutoff``: ended then, or past a stored deadline then (a
    session that expired with nobody using it again is never marked ended; its stored
    deadlines only ever move earlier, so one in the past means it is over)."""
    return or_(
        UserSession.ended_at < cutoff,
        and_(
            UserSession.ended_at.is_(None),
            or_(UserSession.idle_deadline < cutoff, UserSession.absolute_deadline < cutoff),
        ),
    )


def alive_since(cutoff: datetime) -> Any:
    """Sessions still alive at ``cutoff`` or later: not ended before it, and, while not
    marked ended, with neither stored deadline before it. The exact opposite of
    :func:`over_before`, written out so that it holds for live sessions too: negating
    ``over_before`` in SQL gives NULL, not true, when ``ended_at`` is NULL."""
    return or_(
        UserSession.ended_at >= cutoff,
        and_(
            UserSession.ended_at.is_(None),
            UserSession.idle_deadline >= cutoff,
            UserSession.absolute_deadline >= cutoff,
        ),
    )


def purge_sessions(db: Session, tenant_id: str, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` sessions of the tenant that were over before ``cutoff``."""
    ids = list(
        db.scalars(
            select(UserSession.id)
            .where(UserSession.tenant_id == tenant_id, over_before(cutoff))
            .limit(limit)
            .execution_options(all_tenants=True)
        )
    )
    if ids:
        db.execute(
            delete(UserSession)
            .where(UserSession.id.in_(ids))
            .execution_options(synchronize_session=False, all_tenants=True)
        )
    return len(ids)


def purge_devices(db: Session, tenant_id: str, cutoff: datetime, now: datetime, limit: int) -> int:
    """Delete up to ``limit`` devices of the tenant with no session left, no trust in
    force, and not seen since ``cutoff``."""
    no_sessions = ~exists().where(UserSession.device_id == Device.id)
    ids = list(
        db.scalars(
            select(Device.id)
            .where(
                Device.tenant_id == tenant_id,
                Device.last_seen_at < cutoff,
                (Device.trusted_until.is_(None)) | (Device.trusted_until <= now),
                no_sessions,
            )
            .limit(limit)
            .execution_options(all_tenants=True)
        )
    )
    if ids:
        db.execute(
            delete(Device)
            .where(Device.id.in_(ids), no_sessions)
            .execution_options(synchronize_session=False, all_tenants=True)
        )
    return len(ids)


def purge_events(db: Session, chain: str, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` events from the front of the chain that are older than
    ``cutoff``, stopping at the first younger one, and anchor the chain at the last
    one deleted. Holds the chain's head lock, so no event is sealed meanwhile."""
    audit.lock_head(db, chain)
    tenant_id = None if chain == audit.NO_TENANT else chain
    where = Event.tenant_id.is_(None) if tenant_id is None else Event.tenant_id == tenant_id
    front = db.execute(
        select(Event.id, Event.seq, Event.at, Event.hash)
        .where(where, Event.seq.is_not(None))
        .order_by(Event.seq)
        .limit(limit)
        .execution_options(all_tenants=True)
    ).all()
    old = []
    for row in front:
        if row.at >= cutoff:
            break
        old.append(row)
    if not old:
        return 0
    db.execute(
        delete(Event)
        .where(where, Event.seq.is_not(None), Event.seq <= old[-1].seq)
        .execution_options(synchronize_session=False, all_tenants=True)
    )
    db.execute(
        update(AuditHead)
        .where(AuditHead.chain == chain)
        .values(anchor_hash=old[-1].hash, purged=AuditHead.purged + len(old))
        .execution_options(synchronize_session=False)
    )
    return len(old)


def anonymise_ips(
    db: Session,
    model: type[UserSession] | type[Event] | type[Alert],
    old_enough: Any,
    tenant_id: str | None,
    limit: int,
) -> int:
    """Cut up to ``limit`` full addresses on rows matching ``old_enough`` to their
    network."""
    where = [
        old_enough,
        model.ip != "",
        ~model.ip.contains("/"),
        (model.tenant_id.is_(None) if tenant_id is None else model.tenant_id == tenant_id),
    ]
    rows = db.execute(
        select(model.id, model.ip).where(*where).limit(limit).execution_options(all_tenants=True)
    ).all()
    for row_id, ip in rows:
        db.execute(
            update(model)
            .where(model.id == row_id)
            .values(ip=audit.network(ip))
            .execution_options(synchronize_session=False, all_tenants=True)
        )
    return len(rows)


def purge_challenges(db: Session, now: datetime, limit: int) -> int:
    """Delete up to ``limit`` sign-in challenges, emailed codes' and second steps'
    (app.core.mfa), that expired over CHALLENGE_GRACE ago."""
    done = 0
    for model in (Challenge, MfaChallenge, PasskeyChallenge):
        ids = list(
            db.scalars(
                select(model.id)
                .where(model.expires_at < now - CHALLENGE_GRACE)
                .limit(limit - done)
                .execution_options(all_tenants=True)
            )
        )
        if ids:
            db.execute(
                delete(model)
                .where(model.id.in_(ids))
                .execution_options(synchronize_session=False, all_tenants=True)
            )
        done += len(ids)
        if done >= limit:
            break
    return done


def purge_deliveries(db: Session, now: datetime, limit: int) -> int:
    ids = list(
        db.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status != "pending",
                WebhookDelivery.last_attempt_at < now - DELIVERY_HISTORY,
            )
            .limit(limit)
            .execution_options(all_tenants=True)
        )
    )
    if ids:
        db.execute(
            delete(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .execution_options(synchronize_session=False, all_tenants=True)
        )
    return len(ids)


def purge_mail(db: Session, now: datetime, limit: int) -> int:
    ids = list(
        db.scalars(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.status != "pending",
                OutboxMessage.created_at < now - DELIVERY_HISTORY,
            )
            .limit(limit)
            .execution_options(all_tenants=True)
        )
    )
    if ids:
        db.execute(
            delete(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .execution_options(synchronize_session=False, all_tenants=True)
        )
    return len(ids)


def purge_rate_counters(db: Session, now: datetime, limit: int) -> int:
    keys = db.execute(
        select(RateCounter.key, RateCounter.window_start)
        .where(RateCounter.expires_at < now)
        .limit(limit)
    ).all()
    for key, window_start in keys:
        db.execute(
            delete(RateCounter).where(
                RateCounter.key == key, RateCounter.window_start == window_start
            )
        )
    return len(keys)


def purge_assertion_ids(db: Session, now: datetime, limit: int) -> int:
    """Delete up to ``limit`` spent ids (jti) of apps' private_key_jwt assertions whose
    assertion has expired: refused by its ``exp`` from then on, the id needs no keeping
    (app.core.oidc_clients.use_assertion_jti; an app's own next assertion clears its
    expired ids too, this clears those of apps that stopped asking)."""
    keys = db.execute(
        select(OidcAssertionJti.client_id, OidcAssertionJti.jti_hash)
        .where(OidcAssertionJti.expires_at <= now)
        .limit(limit)
        .execution_options(all_tenants=True)
    ).all()
    if keys:
        db.execute(
            delete(OidcAssertionJti)
            .where(
                tuple_(OidcAssertionJti.client_id, OidcAssertionJti.jti_hash).in_(
                    [tuple(key) for key in keys]
                )
            )
            .execution_options(synchronize_session=False, all_tenants=True)
        )
    return len(keys)


# --- the runner ---------------------------------------------------------------------------


def periods(db: Session) -> list[Periods]:
    """Every tenant's periods, and the defaults for the no-tenant chain."""
    found = [
        Periods(t.id, t.sessions_retention_days, t.events_retention_days, t.ip_anonymise_days)
        for t in db.scalars(select(Tenant).order_by(Tenant.id))
    ]
    found.append(
        Periods(
            audit.NO_TENANT,
            DEFAULTS["sessions_retention_days"],
            DEFAULTS["events_retention_days"],
            DEFAULTS["ip_anonymise_days"],
        )
    )
    return found


def purge(new_session: Callable[[], Session], *, now: datetime, batch_size: int = BATCH) -> Purged:
    """Apply every tenant's retention (see the module docstring), committing each batch
    on a new session from ``new_session`` (a write session, not tenant-scoped)."""
    done = Purged()

    def repeat(step: Callable[..., int], *args: Any) -> int:
        total = 0
        while True:
            with new_session() as db:
                count = step(db, *args, batch_size)
                db.commit()
            total += count
            if count < batch_size:
                return total

    with new_session() as db:
        every = periods(db)
    for p in every:
        done.tenants.append(p.chain)
        tenant = None if p.chain == audit.NO_TENANT else p.chain
        ended_before = now - timedelta(days=p.sessions_days)
        ips_before = now - timedelta(days=p.ip_days)
        if tenant is not None:
            done.sessions += repeat(purge_sessions, tenant, ended_before)
            done.devices += repeat(purge_devices, tenant, ended_before, now)
            done.session_ips += repeat(anonymise_ips, UserSession, over_before(ips_before), tenant)
            done.alert_ips += repeat(anonymise_ips, Alert, Alert.created_at < ips_before, tenant)
        done.events += repeat(purge_events, p.chain, now - timedelta(days=p.events_days))
        done.event_ips += repeat(anonymise_ips, Event, Event.at < ips_before, tenant)
    done.challenges += repeat(purge_challenges, now)
    done.deliveries += repeat(purge_deliveries, now)
    done.mail += repeat(purge_mail, now)
    done.rate_counters += repeat(purge_rate_counters, now)
    done.code_slowdowns += repeat(code_checks.forget_old, now)
    done.assertion_ids += repeat(purge_assertion_ids, now)
    return done
