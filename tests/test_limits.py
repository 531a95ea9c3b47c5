"""Concurrent session limits over HTTP: evict_oldest (the evicted browser is told why and
emailed; trusted devices go last) and deny (choose a session to end and continue, or
cancel)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.mail import plain_text
from app.models import Challenge, Event, UserSession
from testkit.values import UA_IPAD, UA_MAC_CHROME
from testkit.web import csrf_from, login, request_code, session_id_of

UA_PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def session_of(client, services, clock):
    with services.session() as db:
        return db.get_one(UserSession, session_id_of(client, services, clock))


def ended_events(services):
    with services.session() as db:
        return db.scalars(
            select(Event).where(Event.kind == "session.ended").order_by(Event.id)
        ).all()


def live_ids(services, user_id):
    with services.session() as db:
        return set(
            db.scalars(
                select(UserSession.id).where(
                    UserSession.user_id == user_id, UserSession.ended_at.is_(None)
                )
            )
        )


# --- evict_oldest ---------------------------------------------------------------------------


@pytest.fixture
def two_signed_in(app, mailbox, make, tenant, services, clock):
    """Sam on a desktop (idle since sign-in) and an iPad (active 10 minutes later)."""
    make.policy(tenant, max_sessions_per_user=2)
    person = make.user("sam@acme.test", tenant)
    desk, ipad = app.test_client(), app.test_client()
    login(desk, mailbox, person.email, user_agent=UA_MAC_CHROME)
    login(ipad, mailbox, person.email, user_agent=UA_IPAD)
    clock.advance(minutes=10)
    assert ipad.get("/devices").status_code == 200  # activity: the iPad is more recent
    return person, desk, ipad


def test_evict_oldest_ends_the_least_recently_active_session(
    app, mailbox, services, clock, two_signed_in
):
    person, desk, ipad = two_signed_in
    desk_session = session_of(desk, services, clock)
    clock.advance(minutes=1)
    phone = app.test_client()
    response = login(phone, mailbox, person.email, user_agent=UA_PHONE)
    assert response.status_code == 302 and response.location == "/devices"
    assert "your least recently active one was signed out" in phone.get("/devices").text

    assert live_ids(services, person.id) == {
        session_of(ipad, services, clock).id,
        session_of(phone, services, clock).id,
    }
    [evicted] = ended_events(services)
    assert evicted.session_id == desk_session.id
    assert evicted.details["reason"] == "limit_evicted"

    # The evicted browser's next request lands on /login, told why.
    response = desk.get("/devices")
    assert response.status_code == 302
    assert response.location.startswith("/login?reason=limit_evicted")
    page = desk.get(response.location).text
    assert "You were signed out because you signed in on another device." in page

    # ... and the person is emailed about it.
    mail = mailbox.newest(person.email, "You were signed out on another device")
    body = plain_text(mail)
    assert "signed in on Safari on iOS" in body
    assert "signed in at 2 Mar 2026, 09:00 UTC" in body


def test_sessions_on_trusted_devices_are_evicted_last(app, mailbox, make, tenant, services, clock):
    make.policy(tenant, max_sessions_per_user=2)
    person = make.user("sam@acme.test", tenant)
    desk, ipad = app.test_client(), app.test_client()
    login(desk, mailbox, person.email, trust=True)  # trusted, and the least recently active
    clock.advance(minutes=10)
    login(ipad, mailbox, person.email, user_agent=UA_IPAD)
    clock.advance(minutes=10)
    phone = app.test_client()
    login(phone, mailbox, person.email, user_agent=UA_PHONE)
    [evicted] = ended_events(services)
    assert evicted.details["reason"] == "limit_evicted"
    assert evicted.session_id != session_of(desk, services, clock).id
    assert desk.get("/devices").status_code == 200
    assert ipad.get("/devices").status_code == 302


# --- deny -----------------------------------------------------------------------------------


@pytest.fixture
def at_the_limit(two_signed_in, make, tenant):
    make.policy(tenant, limit_mode="deny")
    return two_signed_in


def enter_code(client, mailbox, email, user_agent=UA_PHONE, trust=False):
    """Ask for a code and enter it on the code page; returns the answer."""
    before = mailbox.count(email)
    request_code(client, email, **{"User-Agent": user_agent})
    code = mailbox.last_code(email, before + 1)
    page = client.get("/login/code", headers={"User-Agent": user_agent})
    data = {"code": code, "csrf_token": csrf_from(page.text)}
    if trust:
        data["trust_device"] = "y"
    return client.post("/login/code", data=data, headers={"User-Agent": user_agent})


def choices(html):
    return re.findall(r'name="end_session" value="([^"]+)"', html)


def choose(client, page_html, session_id, user_agent=UA_PHONE):
    """Submit the choose-a-session form as the browser would (its hidden fields kept)."""
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page_html))
    if session_id is not None:
        fields["end_session"] = session_id
    return client.post("/login/code", data=fields, headers={"User-Agent": user_agent})


def test_deny_lets_the_person_end_a_session_and_continue(
    app, mailbox, services, clock, at_the_limit
):
    person, desk, ipad = at_the_limit
    desk_session, ipad_session = (
        session_of(desk, services, clock),
        session_of(ipad, services, clock),
    )
    phone = app.test_client()

    response = enter_code(phone, mailbox, person.email, trust=True)
    assert response.status_code == 409
    page = response.text
    assert "Your code is right. You already have 2 active sessions" in page
    assert set(choices(page)) == {desk_session.id, ipad_session.id}
    assert "Chrome on macOS" in page and "Safari on iOS" in page
    assert phone.get_cookie("holdfast_session") is None
    with services.session() as db:  # the code is not used up yet
        assert (
            db.scalar(
                select(func.count())
                .select_from(Challenge)
                .where(Challenge.consumed_at.is_(None), Challenge.email == person.email)
            )
            == 1
        )

    response = choose(phone, page, ipad_session.id)
    assert response.status_code == 302 and response.location == "/devices"
    assert "Signed in. The session you chose was ended." in phone.get("/devices").text
    phone_session = session_of(phone, services, clock)
    assert live_ids(services, person.id) == {desk_session.id, phone_session.id}
    [ended] = ended_events(services)
    assert ended.session_id == ipad_session.id and ended.actor_id == person.id
    assert ended.details["reason"] == "revoked_by_user"
    with services.session() as db:  # "Trust this device" survived the detour
        from app.models import Device

        assert db.get_one(Device, phone_session.device_id).is_trusted(clock.now())
    response = ipad.get("/devices")
    assert response.location.startswith("/login?reason=revoked_by_user")


def test_deny_cancel_changes_nothing(app, mailbox, services, clock, at_the_limit):
    person, _desk, _ipad = at_the_limit
    before = live_ids(services, person.id)
    phone = app.test_client()
    page = enter_code(phone, mailbox, person.email).text
    response = phone.post("/login/cancel", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 302 and response.location == "/login"
    assert "Sign-in cancelled. Nothing changed on your other devices." in phone.get("/login").text
    # The sign-in flow is gone: the code page sends the browser back to the start.
    assert phone.get("/login/code").status_code == 302
    assert choose(phone, page, next(iter(before))).status_code == 302
    assert live_ids(services, person.id) == before
    assert ended_events(services) == []


def test_deny_asks_again_for_a_missing_or_stale_choice(app, mailbox, services, clock, at_the_limit):
    person, _desk, _ipad = at_the_limit
    phone = app.test_client()
    page = enter_code(phone, mailbox, person.email).text

    response = choose(phone, page, None)
    assert response.status_code == 409
    assert "Choose the session to end." in response.text

    response = choose(phone, page, "sess_not-one-of-yours")
    assert response.status_code == 409
    assert "That session has ended already. Choose another one." in response.text
    assert ended_events(services) == []
    assert len(live_ids(services, person.id)) == 2


def test_deny_with_a_wrong_code_counts_the_try(app, mailbox, services, clock, at_the_limit):
    person, _desk, _ipad = at_the_limit
    phone = app.test_client()
    page = enter_code(phone, mailbox, person.email).text
    # A well-shaped wrong code (one digit changed): a 7-digit one would cost no try.
    code = re.search(r'name="code" value="(\d{6})"', page).group(1)
    wrong = str((int(code[0]) + 1) % 10) + code[1:]
    tampered = page.replace(f'name="code" value="{code}"', f'name="code" value="{wrong}"')
    response = choose(phone, tampered, choices(page)[0])
    assert response.status_code == 200
    assert "That code is not right" in response.text
    assert len(live_ids(services, person.id)) == 2
    with services.session() as db:
        assert db.scalar(select(func.max(Challenge.attempts))) == 1


def test_deny_over_a_lowered_limit_says_what_a_choice_ends(
    app, mailbox, make, tenant, services, clock
):
    """Issue 21, finding 12: four sessions, the limit lowered to 2. Signing in must end
    three: the page says so before anything ends, and the choice ends exactly the chosen
    one plus the two least recently active others."""
    person = make.user("sam@acme.test", tenant)
    clients = []
    for number in range(4):
        each = app.test_client()
        login(each, mailbox, person.email, user_agent=f"{UA_IPAD} n{number}")
        clients.append(each)
        clock.advance(minutes=1)
    ids = [session_of(each, services, clock).id for each in clients]
    make.policy(tenant, max_sessions_per_user=2, limit_mode="deny")

    phone = app.test_client()
    response = enter_code(phone, mailbox, person.email)
    assert response.status_code == 409
    page = response.text
    assert "You have 4 active sessions and your organisation now allows 2." in page
    assert "ending it also ends your 2 least recently active other sessions" in page
    assert 'id="also-ends"' in page and "3 in all" in page
    assert "End 3 sessions and sign in" in page
    assert ended_events(services) == []

    response = choose(phone, page, ids[3])  # the newest one
    assert response.status_code == 302 and response.location == "/devices"
    phone_session = session_of(phone, services, clock).id
    assert live_ids(services, person.id) == {ids[2], phone_session}
    reasons = {e.session_id: e.details["reason"] for e in ended_events(services)}
    assert reasons == {
        ids[3]: "revoked_by_user",
        ids[0]: "limit_evicted",
        ids[1]: "limit_evicted",
    }


def test_deny_over_a_lowered_limit_over_the_api(app, mailbox, make, tenant, services, clock):
    person = make.user("sam@acme.test", tenant)
    started = []
    for _ in range(3):
        before = mailbox.count(person.email)
        answer = app.test_client().post("/api/auth/login", json={"email": person.email})
        code = mailbox.last_code(person.email, before + 1)
        verified = app.test_client().post(
            "/api/auth/verify", json={"challengeId": answer.json["challengeId"], "code": code}
        )
        assert verified.status_code == 201
        started.append(verified.json["sessionId"])
        clock.advance(minutes=1)
    make.policy(tenant, max_sessions_per_user=1, limit_mode="deny")
    client = app.test_client()
    before = mailbox.count(person.email)
    answer = client.post("/api/auth/login", json={"email": person.email})
    code = mailbox.last_code(person.email, before + 1)
    body = {"challengeId": answer.json["challengeId"], "code": code}
    refused = client.post("/api/auth/verify", json=body)
    assert refused.status_code == 409 and refused.json["code"] == "session_limit_reached"
    assert refused.json["alsoEnds"] == 2
    assert "also ends your 2 least recently active other sessions" in refused.json["error"]
    swapped = client.post("/api/auth/verify", json={**body, "endSessionId": started[1]})
    assert swapped.status_code == 201
    assert live_ids(services, person.id) == {swapped.json["sessionId"]}


def test_the_choice_at_the_limit_reads_german(app, mailbox, services, clock, at_the_limit):
    """The whole deny page in the browser's language: the core's count, the sessions'
    relative times and addresses, the buttons and the notice after choosing."""
    person, _desk, _ipad = at_the_limit
    phone = app.test_client()
    phone.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de-DE,de;q=0.9"
    response = enter_code(phone, mailbox, person.email)
    assert response.status_code == 409
    page = response.text
    assert "<h1>Zu viele Sitzungen</h1>" in page
    assert (
        "Ihr Code stimmt. Sie haben bereits 2 aktive Sitzungen, so viele wie Ihre "
        "Organisation erlaubt. Beenden Sie eine davon, um sich hier anzumelden."
    ) in page
    assert "angemeldet vor 10 Minuten" in page and "Beenden und anmelden" in page
    assert "Too many sessions" not in page and " ago" not in page
    chosen = choose(phone, page, choices(page)[0])
    assert chosen.status_code == 302
    assert "Angemeldet. Die gewählte Sitzung wurde beendet." in phone.get("/devices").text
