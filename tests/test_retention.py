"""Retention: `holdfast purge` deletes and anonymises exactly what each tenant's periods
say, in batches, and does nothing more when run again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import Services
from app.clock import FrozenClock
from app.core import audit, retention
from app.models import Challenge, Device, Event, Tenant, User, UserSession
from testkit.mail import Mailbox
from testkit.rows import Factory
from testkit.values import UA_IPAD
from testkit.web import csrf_from, login

DAY = 86400
UA_PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def counts(services: Services, tenant_id: str) -> dict[str, int]:
    with services.session() as db:

        def count(model: Any, *where: Any) -> int:
            return db.scalar(select(func.count()).select_from(model).where(*where)) or 0

        return {
            "sessions": count(UserSession, UserSession.tenant_id == tenant_id),
            "devices": count(Device, Device.tenant_id == tenant_id),
            "events": count(Event, Event.tenant_id == tenant_id),
            "users": count(User, User.tenant_id == tenant_id),
            "challenges": count(Challenge, Challenge.tenant_id == tenant_id),
            "full_session_ips": count(
                UserSession,
                UserSession.tenant_id == tenant_id,
                UserSession.ip != "",
                ~UserSession.ip.contains("/"),
            ),
            "full_event_ips": count(
                Event, Event.tenant_id == tenant_id, Event.ip != "", ~Event.ip.contains("/")
            ),
        }


def run_purge(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["purge", *args])
    assert result.exit_code == 0, result.output
    return result.output


def purge_now(services: Services, batch_size: int = 1000) -> retention.Purged:
    return retention.purge(
        lambda: services.session(write=True), now=services.clock.now(), batch_size=batch_size
    )


def sign_out(client: FlaskClient) -> None:
    page = client.get("/devices")
    assert client.post("/logout", data={"csrf_token": csrf_from(page.text)}).status_code == 302


def from_address(app: Flask, ip: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


@pytest.fixture
def history(
    app: Flask, services: Services, make: Factory, clock: FrozenClock, mailbox: Mailbox
) -> dict[str, Any]:
    """Day 0: Sam signs in and out on a laptop, then on a trusted tablet (trust for a
    year) and out again; Kim, in a tenant that keeps sessions 10 days, signs in and out."""
    acme = make.tenant("acme", trusted_lifetime=365 * DAY)
    sam = make.user("sam@acme.test", acme)
    globex = make.tenant("globex", sessions_retention_days=10, ip_anonymise_days=5)
    kim = make.user("kim@globex.test", globex)
    laptop = from_address(app, "203.0.113.5")
    assert login(laptop, mailbox, sam.email).status_code == 302
    clock.advance(minutes=10)
    sign_out(laptop)
    tablet = from_address(app, "2001:db8:abcd:12::7")
    assert login(tablet, mailbox, sam.email, trust=True, user_agent=UA_IPAD).status_code == 302
    sign_out(tablet)
    other = from_address(app, "198.51.100.23")
    assert login(other, mailbox, kim.email).status_code == 302
    sign_out(other)
    return {"acme": acme, "globex": globex, "sam": sam, "kim": kim}


def test_purge_follows_each_tenants_periods_and_is_idempotent(
    app: Flask, services: Services, clock: FrozenClock, mailbox: Mailbox, history: dict[str, Any]
) -> None:
    acme, globex = history["acme"].id, history["globex"].id
    start = counts(services, acme)
    assert start["sessions"] == 2 and start["devices"] == 2 and start["challenges"] == 2

    # Day 40: Sam signs in on a phone. Acme keeps sessions 90 days but cuts IPs after 30;
    # Globex keeps sessions 10 days.
    clock.advance(days=40)
    phone = from_address(app, "192.0.2.44")
    assert login(phone, mailbox, history["sam"].email, user_agent=UA_PHONE).status_code == 302
    acme_before, globex_before = counts(services, acme), counts(services, globex)
    with services.session() as db:
        old_event_ips = db.scalar(
            select(func.count())
            .select_from(Event)
            .where(
                Event.tenant_id == acme, Event.ip != "", Event.at < clock.now() - timedelta(days=30)
            )
        )
    done = purge_now(services)
    acme_after, globex_after = counts(services, acme), counts(services, globex)
    # Acme: nothing deleted but day-0 challenges; both ended sessions' IPs cut.
    assert acme_after["sessions"] == acme_before["sessions"] == 3
    assert acme_after["devices"] == acme_before["devices"] == 3
    assert acme_after["events"] == acme_before["events"]
    assert acme_after["challenges"] == 1  # only the phone's, today
    assert acme_after["full_session_ips"] == 1  # the live phone session keeps its address
    assert acme_after["full_event_ips"] == acme_before["full_event_ips"] - old_event_ips
    # Globex: Kim's ended session and (untrusted, unused) device are gone.
    assert globex_before["sessions"] == 1 and globex_after["sessions"] == 0
    assert globex_before["devices"] == 1 and globex_after["devices"] == 0
    assert done.sessions == 1 and done.devices == 1 and done.challenges == 3
    assert done.session_ips == 2 and done.events == 0
    with services.session() as db:
        sessions = {s.ip for s in db.scalars(select(UserSession))}
    assert sessions == {"203.0.113.0/24", "2001:db8:abcd::/48", "192.0.2.44"}
    # Again: nothing more to do.
    again = purge_now(services)
    assert again.total == 0
    assert counts(services, acme) == acme_after and counts(services, globex) == globex_after
    for chain in (acme, globex, audit.NO_TENANT):
        with services.session() as db:
            assert audit.verify(db, chain).intact

    # Day 100, in batches of one row: the two day-0 sessions and the laptop go; the
    # tablet stays (trusted for a year), and so does the phone (over only since day 40).
    clock.advance(days=60)
    done = purge_now(services, batch_size=1)
    after = counts(services, acme)
    assert (done.sessions, done.devices, done.events) == (2, 1, 0)
    assert after["sessions"] == 1 and after["devices"] == 2
    with services.session() as db:
        kept = {d.kind for d in db.scalars(select(Device).where(Device.tenant_id == acme))}
        assert kept == {"tablet", "phone"}
    assert purge_now(services, batch_size=1).total == 0
    assert counts(services, acme) == after


def test_old_events_are_purged_from_the_front_and_the_chain_still_verifies(
    app: Flask, services: Services, clock: FrozenClock, mailbox: Mailbox, history: dict[str, Any]
) -> None:
    acme = history["acme"].id
    day_zero = counts(services, acme)["events"]
    globex_day_zero = counts(services, history["globex"].id)["events"]
    # Day 200: another sign-in. Day 400: the day-0 events are past 365 days.
    clock.advance(days=200)
    phone = from_address(app, "192.0.2.44")
    assert login(phone, mailbox, history["sam"].email).status_code == 302
    clock.advance(days=200)
    before = counts(services, acme)
    output = run_purge(app, "--batch-size", "3")
    after = counts(services, acme)
    assert after["events"] == before["events"] - day_zero
    assert f"{day_zero + globex_day_zero} events" in output  # Globex's day-0 events too
    assert counts(services, history["globex"].id)["events"] == 0
    assert after["sessions"] == 0 and after["devices"] == 0  # all over long ago, trust ended
    assert after["users"] == before["users"]
    with services.session() as db:
        verdict = audit.verify(db, acme)
        first = db.scalar(select(Event).where(Event.tenant_id == acme).order_by(Event.seq))
    assert verdict.intact, verdict.problem
    assert verdict.purged == day_zero and verdict.checked == after["events"]
    assert first is not None and first.seq == day_zero + 1
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0
    # Idempotent from cron.
    assert "Purged 0 sessions, 0 devices, 0 events" in run_purge(app)
    assert counts(services, acme) == after


def test_purge_stops_at_a_younger_event(
    services: Services, clock: FrozenClock, make: Factory
) -> None:
    """An out-of-order timestamp never makes a hole in the chain."""
    tenant = make.tenant("acme", events_retention_days=30)
    clock.advance(days=10)
    make.user("late@acme.test", tenant)
    clock.advance(days=25)
    # tenant.created is 35 days old, user.created 25: only the first may go.
    assert purge_now(services).events == 1
    with services.session() as db:
        assert [e.kind for e in db.scalars(select(Event).where(Event.tenant_id == tenant.id))] == [
            "user.created"
        ]
        assert audit.verify(db, tenant.id).intact


def test_an_admin_sets_the_retention_periods(
    app: Flask,
    services: Services,
    client: FlaskClient,
    mailbox: Mailbox,
    make: Factory,
    tenant: Tenant,
) -> None:
    admin = make.user("ada@acme.test", tenant, role="admin")
    assert login(client, mailbox, admin.email).status_code == 302
    page = client.get("/admin/reports")
    assert page.status_code == 200 and 'name="events_retention_days"' in page.text
    assert 'value="365"' in page.text
    token = csrf_from(page.text)
    bad = client.post(
        "/admin/retention",
        data={
            "csrf_token": token,
            "sessions_retention_days": "30",
            "events_retention_days": "0",
            "ip_anonymise_days": "7",
        },
    )
    assert bad.status_code == 422 and "1 to 3650 days" in bad.text
    with services.session() as db:
        assert retention.settings(db.get_one(Tenant, tenant.id)) == retention.DEFAULTS
    good = client.post(
        "/admin/retention",
        data={
            "csrf_token": token,
            "sessions_retention_days": "30",
            "events_retention_days": "730",
            "ip_anonymise_days": "7",
        },
    )
    assert good.status_code == 302
    with services.session() as db:
        assert retention.settings(db.get_one(Tenant, tenant.id)) == {
            "sessions_retention_days": 30,
            "events_retention_days": 730,
            "ip_anonymise_days": 7,
        }
        event = db.scalars(select(Event).order_by(Event.id.desc())).first()
    assert event is not None and event.kind == "policy.changed" and event.actor_id == admin.id
    assert event.details["changes"]["events_retention_days"] == {"old": 365, "new": 730}
    member = make.user("sam@acme.test", tenant)
    other = app.test_client()
    assert login(other, mailbox, member.email).status_code == 302
    assert other.get("/admin/reports").status_code == 403
