"""The devices page: list, rename, end one, end all others, status, over HTTP."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Device, Event, UserSession
from testkit.values import UA_IPAD
from testkit.web import csrf_from, login, session_id_of

HTMX = {"HX-Request": "true"}


def two_browsers(app, mailbox, email):
    desk, ipad = app.test_client(), app.test_client()
    login(desk, mailbox, email)
    login(ipad, mailbox, email, user_agent=UA_IPAD)
    return desk, ipad


def test_devices_lists_each_device_with_its_sessions(app, mailbox, member, services, clock):
    desk, _ipad = two_browsers(app, mailbox, member.email)
    page = desk.get("/devices")
    assert page.text.count('<article class="device') == 2
    assert "Chrome on macOS" in page.text
    assert "Safari on iOS" in page.text
    assert "Tablet · iOS · Safari" in page.text
    assert page.text.count("This device") == 1
    own = session_id_of(desk, services, clock)
    assert f'id="session-{own}"' in page.text
    assert "Signs out" in page.text
    assert "Signs out after 30 minutes without use, at " in page.text


def test_end_another_session_with_htmx_replaces_only_its_device(
    app, mailbox, member, services, clock
):
    desk, ipad = two_browsers(app, mailbox, member.email)
    ipad_session = session_id_of(ipad, services, clock)
    page = desk.get("/devices")
    response = desk.post(
        f"/sessions/{ipad_session}/end", headers={**HTMX, "X-CSRFToken": csrf_from(page.text)}
    )
    assert response.status_code == 200
    assert "<html" not in response.text  # a fragment, not a page
    assert ipad_session not in response.text
    assert "HX-Request" in response.headers["Vary"]
    with services.session() as db:
        row = db.get_one(UserSession, ipad_session)
        assert row.end_reason == "revoked_by_user"
        event = db.scalars(select(Event).where(Event.kind == "session.ended")).one()
        assert event.actor_id == member.id
        assert event.session_id == ipad_session
    # The ended browser is sent to the sign-in page with the reason, on its next request.
    bounced = ipad.get("/devices")
    assert bounced.status_code == 302
    assert bounced.location.startswith("/login?reason=revoked_by_user")
    assert ipad.get_cookie("holdfast_session") is None  # the dead cookie is cleared
    login_page = ipad.get(bounced.location)
    assert "You were signed out from another device." in login_page.text


def test_end_without_javascript_redirects_back(app, mailbox, member, services, clock):
    desk, ipad = two_browsers(app, mailbox, member.email)
    page = desk.get("/devices")
    response = desk.post(
        f"/sessions/{session_id_of(ipad, services, clock)}/end",
        data={"csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 302
    assert response.location == "/devices"


def test_end_all_others(app, mailbox, member, services, clock):
    desk, ipad = two_browsers(app, mailbox, member.email)
    third = app.test_client()
    login(third, mailbox, member.email)
    page = desk.get("/devices")
    response = desk.post(
        "/sessions/end-others", headers={**HTMX, "X-CSRFToken": csrf_from(page.text)}
    )
    assert response.status_code == 200
    assert "Ended 2 other sessions." in response.text
    with services.session() as db:
        live = db.scalars(select(UserSession).where(UserSession.ended_at.is_(None))).all()
        assert [s.id for s in live] == [session_id_of(desk, services, clock)]
    assert ipad.get("/devices").status_code == 302
    assert third.get("/devices").status_code == 302
    assert desk.get("/devices").status_code == 200


def test_ending_the_current_session_signs_out(signed_in, services, clock):
    own = session_id_of(signed_in, services, clock)
    page = signed_in.get("/devices")
    response = signed_in.post(
        f"/sessions/{own}/end", headers={**HTMX, "X-CSRFToken": csrf_from(page.text)}
    )
    assert response.headers["HX-Redirect"].startswith("/login?reason=logout")


def test_another_persons_session_is_not_found(app, mailbox, member, make, tenant, services, clock):
    other_person = make.user("kim@acme.test", tenant)
    theirs = app.test_client()
    login(theirs, mailbox, other_person.email)
    mine = app.test_client()
    login(mine, mailbox, member.email)
    page = mine.get("/devices")
    response = mine.post(
        f"/sessions/{session_id_of(theirs, services, clock)}/end",
        data={"csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 404
    assert theirs.get("/devices").status_code == 200


def test_rename_a_device(signed_in, services):
    page = signed_in.get("/devices")
    with services.session() as db:
        device = db.scalars(select(Device)).one()
    response = signed_in.post(
        f"/devices/{device.id}/name",
        data={"name": "  Sarah's   iPhone ", "csrf_token": csrf_from(page.text)},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert "Sarah&#39;s iPhone" in response.text
    with services.session() as db:
        assert db.get_one(Device, device.id).name == "Sarah's iPhone"
        event = db.scalars(select(Event).where(Event.kind == "device.renamed")).one()
        assert event.details["new"] == "Sarah's iPhone"
    too_long = signed_in.post(
        f"/devices/{device.id}/name",
        data={"name": "x" * 61, "csrf_token": csrf_from(page.text)},
        headers=HTMX,
    )
    assert too_long.status_code == 422
    with services.session() as db:
        assert db.get_one(Device, device.id).name == "Sarah's iPhone"


def test_status_is_cheap_json_and_not_activity(signed_in, services, clock):
    clock.advance(minutes=5)
    status = signed_in.get("/session/status")
    assert status.status_code == 200
    body = status.get_json()
    assert body["valid"] is True
    assert body["deviceCount"] == 1
    assert body["expiresIn"] == 25 * 60  # polling did not move the idle deadline
    assert body["idleTimeout"] == 30 * 60
    # The same facts as the API's status check, which the same cookie may ask too.
    api = signed_in.get("/api/auth/session").get_json()
    assert body == {**api, "idleTimeout": 30 * 60}
    token = csrf_from(signed_in.get("/devices").text)  # this page view is activity too
    clock.advance(minutes=5)
    extended = signed_in.post("/session/extend", headers={"X-CSRFToken": token})
    assert extended.get_json()["expiresIn"] == 30 * 60


def test_status_after_revocation_says_why(app, mailbox, member, services, clock):
    desk, ipad = two_browsers(app, mailbox, member.email)
    page = desk.get("/devices")
    desk.post("/sessions/end-others", data={"csrf_token": csrf_from(page.text)})
    status = ipad.get("/session/status")
    assert status.status_code == 401
    body = status.get_json()
    assert body["valid"] is False
    assert body["code"] == "invalid_session"
    assert body["reason"] == "revoked_by_user"
    assert body["loginUrl"] == "/login?reason=revoked_by_user"


def test_idle_expiry_says_session_expired(signed_in, clock):
    clock.advance(minutes=31)
    assert signed_in.get("/devices").location.startswith("/login?reason=idle_expired")
    status = signed_in.get("/session/status")  # the dead cookie was cleared
    assert status.get_json()["code"] == "invalid_session"
    assert signed_in.get("/devices").location == "/login?next=/devices"


def test_a_trusted_device_is_one_card_that_outlives_its_sessions(
    app, mailbox, member, services, clock
):
    """Issue 23: a trusted device with a live session was a card and again a row under
    "Trusted devices" ("Stop trusting" twice), and the row kept saying it was signed in
    after its session ended. Now it is one card, before and after, without a reload."""
    desk, ipad = app.test_client(), app.test_client()
    login(desk, mailbox, member.email)
    login(ipad, mailbox, member.email, user_agent=UA_IPAD, trust=True)
    ipad_session = session_id_of(ipad, services, clock)
    with services.session() as db:
        ipad_device = db.get_one(UserSession, ipad_session).device_id

    page = desk.get("/devices").text
    assert page.count('<article class="device') == 2
    assert page.count(f'id="device-{ipad_device}"') == 1
    assert 'id="trusted"' not in page and "Trusted devices" not in page
    assert page.count("Stop trusting<") == 1  # on the iPad's card, and nowhere else
    card = page[page.index(f'id="device-{ipad_device}"') :]
    assert "Stop trusting" in card and f'id="session-{ipad_session}"' in card

    response = desk.post(
        f"/sessions/{ipad_session}/end", headers={**HTMX, "X-CSRFToken": csrf_from(page)}
    )
    assert response.status_code == 200
    fragment = response.text
    # Still one card, trusted, with no session in it; the swap carries the whole list.
    assert fragment.count(f'id="device-{ipad_device}"') == 1
    assert f'id="session-{ipad_session}"' not in fragment
    assert "Not signed in on this device now." in fragment
    assert fragment.count("Stop trusting<") == 1
    assert 'id="end-others"' not in fragment  # no other live session is left
    # The card with a live session comes first, the signed-out trusted one last.
    assert fragment.index("This device") < fragment.index(f'id="device-{ipad_device}"')


def test_devices_of_the_same_name_are_told_apart(app, mailbox, member, services, clock):
    """Two iPads both read "Safari on iOS": each card (and every button's accessible name
    and question) says when that one was added, until one gets a name of its own."""
    first, second = app.test_client(), app.test_client()
    login(first, mailbox, member.email, user_agent=UA_IPAD)
    added = clock.now()
    clock.advance(minutes=10)
    login(second, mailbox, member.email, user_agent=UA_IPAD)
    later = clock.now()
    page = second.get("/devices").text
    day = f"{added.day} {added:%b %Y}"
    one = f"Safari on iOS · added {day}, {added:%H:%M}"
    two = f"Safari on iOS · added {day}, {later:%H:%M}"
    assert f">{one}</h2>" in page and f">{two}</h2>" in page
    assert f'Remove<span class="visually-hidden"> {one}</span>' in page
    assert f"End the session on {one}? That browser will be signed out." in page

    with services.session() as db:
        first_device = db.get_one(UserSession, session_id_of(first, services, clock)).device_id
    renamed = second.post(
        f"/devices/{first_device}/name",
        data={"name": "Ward iPad", "csrf_token": csrf_from(page)},
        headers=HTMX,
    )
    assert renamed.status_code == 200
    assert ">Ward iPad</h2>" in renamed.text
    assert ">Safari on iOS</h2>" in renamed.text and "added" not in renamed.text


def test_status_gives_a_trusted_device_its_longer_idle_timeout(client, mailbox, member, clock):
    login(client, mailbox, member.email, user_agent=UA_IPAD, trust=True)
    clock.advance(minutes=45)  # past the ordinary 30 minutes
    body = client.get("/session/status").get_json()
    assert body["valid"] is True
    assert body["idleTimeout"] == 8 * 3600
    assert body["expiresIn"] == 8 * 3600 - 45 * 60
