"""Trusted devices over HTTP: trust on the code page and on /devices, stop trusting,
remove a device; each change audited; the device cookie bound to one person."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from app.models import Device, Event, UserSession
from testkit.values import UA_IPAD
from testkit.web import csrf_from, login, session_id_of

HTMX = {"HX-Request": "true"}
DAY = timedelta(days=1)


def my_session(client, services, clock):
    with services.session() as db:
        return db.get_one(UserSession, session_id_of(client, services, clock))


def device_of(services, session):
    with services.session() as db:
        return db.get_one(Device, session.device_id)


def events(services, kind):
    with services.session() as db:
        return db.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)).all()


def post(client, path, **headers):
    token = csrf_from(client.get("/devices").text)
    return client.post(path, data={"csrf_token": token}, headers=headers)


def token_exp(client, services, clock):
    return services.keys.verify(client.get_cookie("holdfast_session").value, clock.now())


def test_trust_on_the_code_page_gives_the_trusted_lifetime(
    client, mailbox, member, services, clock
):
    response = login(client, mailbox, member.email, user_agent=UA_IPAD, trust=True)
    assert response.status_code == 302
    session = my_session(client, services, clock)
    device = device_of(services, session)
    assert device.trusted_until == clock.now() + 30 * DAY
    assert session.absolute_deadline == clock.now() + 30 * DAY
    cookie = client.get_cookie("holdfast_session")
    assert cookie.expires.timestamp() >= (clock.now() + 30 * DAY).timestamp() - 1
    [trusted] = events(services, "device.trusted")
    assert trusted.details["device_id"] == device.id and trusted.actor_id == member.id

    page = client.get("/devices").text
    card = page[page.index(f'id="device-{device.id}"') :]
    assert 'id="trusted"' not in page  # no second list: the card says it all
    assert re.search(r"Trusted until <time[^>]*>1 Apr 2026</time>", card)
    assert re.search(r"title=\"Trusted until 01 Apr 2026, 09:00 UTC\"", card)
    # The card says when this device signs out and why: the trusted idle timeout.
    assert "Signs out after 8 hours without use (trusted device), at " in card
    assert re.search(r"at <time[^>]*>01 Apr 2026, 09:00 UTC</time> at the latest", card)
    assert "Trust this device" not in page and page.count("Stop trusting<") == 1


def test_trust_this_device_on_the_devices_page(client, mailbox, member, services, clock):
    login(client, mailbox, member.email)
    before = my_session(client, services, clock)
    assert before.absolute_deadline == clock.now() + timedelta(hours=12)
    assert "Trust this device" in client.get("/devices").text
    clock.advance(minutes=20)

    response = post(client, f"/devices/{before.device_id}/trust", **HTMX)
    assert response.status_code == 200
    assert "is trusted until 1 Apr 2026" in response.text
    assert response.text.count("Stop trusting<") == 1 and "Trust this device" not in response.text
    assert "Signs out after 8 hours without use (trusted device)" in response.text

    after = my_session(client, services, clock)
    assert device_of(services, after).trusted_until == clock.now() + 30 * DAY
    # The running session now lives as long as a trusted device's may, counted from its
    # start, and the browser got a token that lives as long.
    assert after.absolute_deadline == before.created_at + 30 * DAY
    assert token_exp(client, services, clock).expires_at == int(after.absolute_deadline.timestamp())
    for _ in range(40):  # active past the old 12-hour deadline
        clock.advance(minutes=20)
        assert client.get("/devices").status_code == 200
    [trusted] = events(services, "device.trusted")
    assert trusted.details["sessions_extended"] == [after.id]
    assert trusted.session_id == after.id


def test_only_the_device_in_use_can_be_trusted(app, mailbox, member, services, clock):
    desk, ipad = app.test_client(), app.test_client()
    login(desk, mailbox, member.email)
    login(ipad, mailbox, member.email, user_agent=UA_IPAD)
    ipad_device = my_session(ipad, services, clock).device_id
    response = post(desk, f"/devices/{ipad_device}/trust")
    assert response.status_code == 403
    assert "only trust the device you are using" in response.text
    assert device_of(services, my_session(ipad, services, clock)).trusted_until is None
    assert events(services, "device.trusted") == []


def test_stop_trusting_ends_nothing_else(app, mailbox, member, services, clock):
    desk, ipad = app.test_client(), app.test_client()
    login(desk, mailbox, member.email)
    login(ipad, mailbox, member.email, user_agent=UA_IPAD, trust=True)
    ipad_session = my_session(ipad, services, clock)

    clock.advance(minutes=5)
    response = post(desk, f"/devices/{ipad_session.device_id}/untrust")
    assert response.status_code == 302 and response.location == "/devices"
    page = desk.get("/devices").text
    assert "is no longer trusted. Its sessions keep running, now under the usual limits." in page
    assert "Stop trusting" not in page and "(trusted device)" not in page
    card = page[page.index(f'id="device-{ipad_session.device_id}"') :]
    assert "Signs out after 30 minutes without use, at " in card

    assert device_of(services, ipad_session).trusted_until == clock.now()
    assert ipad.get("/devices").status_code == 200  # still signed in
    assert my_session(ipad, services, clock).ended_at is None
    [untrusted] = events(services, "device.untrusted")
    assert untrusted.actor_id == member.id
    assert untrusted.details["device_id"] == ipad_session.device_id
    assert untrusted.details["old"] == (clock.now() - timedelta(minutes=5) + 30 * DAY).isoformat()
    # Stopping again changes nothing and writes nothing.
    post(desk, f"/devices/{ipad_session.device_id}/untrust")
    assert len(events(services, "device.untrusted")) == 1


def test_remove_device_ends_its_sessions_and_its_trust(app, mailbox, member, services, clock):
    desk, ipad = app.test_client(), app.test_client()
    login(desk, mailbox, member.email)
    login(ipad, mailbox, member.email, user_agent=UA_IPAD, trust=True)
    ipad_session = my_session(ipad, services, clock)
    device_id = ipad_session.device_id

    response = post(desk, f"/devices/{device_id}/remove", **HTMX)
    assert response.status_code == 200
    assert "Device removed: 1 session ended, trust ended." in response.text
    assert f'id="device-{device_id}"' not in response.text

    with services.session() as db:
        row = db.get_one(UserSession, ipad_session.id)
        assert row.end_reason == "revoked_by_user"
        assert not db.get_one(Device, device_id).is_trusted(clock.now())
    [removed] = events(services, "device.removed")
    assert removed.details["sessions_ended"] == [ipad_session.id]
    assert removed.details["was_trusted"] is True
    ended = events(services, "session.ended")
    assert [e.session_id for e in ended] == [ipad_session.id]

    # The iPad is signed out, and its old device cookie no longer names that device.
    gone = ipad.get("/devices")
    assert gone.status_code == 302 and "reason=revoked_by_user" in gone.location
    login(ipad, mailbox, member.email, user_agent=UA_IPAD)
    assert my_session(ipad, services, clock).device_id != device_id


def test_removing_the_device_in_use_signs_out(client, mailbox, member, services, clock):
    login(client, mailbox, member.email)
    session = my_session(client, services, clock)
    response = post(client, f"/devices/{session.device_id}/remove")
    assert response.status_code == 302 and response.location == "/login?reason=logout"
    assert my_session(client, services, clock).end_reason == "logout"


def test_another_persons_device_is_not_found(app, mailbox, member, make, tenant, services, clock):
    other = make.user("kim@acme.test", tenant)
    mine, theirs = app.test_client(), app.test_client()
    login(mine, mailbox, member.email)
    login(theirs, mailbox, other.email, trust=True)
    their_device = my_session(theirs, services, clock).device_id
    for action in ("trust", "untrust", "remove"):
        response = post(mine, f"/devices/{their_device}/{action}")
        assert response.status_code == 404, action
    assert device_of(services, my_session(theirs, services, clock)).is_trusted(clock.now())
    assert my_session(theirs, services, clock).ended_at is None


def test_another_persons_device_cookie_is_worthless(
    app, mailbox, member, make, tenant, services, clock
):
    """Kim signs in in a browser holding Sam's trusted device cookie: it is a new device
    for Kim, with no trust and the ordinary lifetime."""
    other = make.user("kim@acme.test", tenant)
    browser = app.test_client()
    login(browser, mailbox, member.email, trust=True)
    sams = my_session(browser, services, clock)
    raw = browser.get_cookie("holdfast_device").value
    post(browser, "/logout")
    kims_browser = app.test_client()
    kims_browser.set_cookie("holdfast_device", raw)
    login(kims_browser, mailbox, other.email)
    kims = my_session(kims_browser, services, clock)
    assert kims.device_id != sams.device_id
    assert kims.absolute_deadline == clock.now() + timedelta(hours=12)
    assert device_of(services, kims).trusted_until is None
    with services.session() as db:
        stored = {d.cookie_hash for d in db.scalars(select(Device))}
        assert raw not in stored and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in stored)
