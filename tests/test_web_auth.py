"""Signing in and out through the pages, with CSRF on and codes from the real SMTP server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from app.config import ConfigError
from app.models import Challenge, Event, UserSession
from testkit.mail import outbox_drained
from testkit.values import SECRET
from testkit.web import csrf_from, login, request_code, session_id_of


def events_of(services, kind):
    with services.session() as db:
        return db.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)).all()


def test_sign_in_lands_on_devices_with_a_safe_cookie(client, mailbox, member, services, clock):
    response = login(client, mailbox, member.email)
    assert response.status_code == 302
    assert response.location == "/devices"
    header = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("holdfast_session=")
    )
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    max_age = int(header.split("Max-Age=")[1].split(";")[0])
    assert 0 < max_age <= 12 * 3600  # never past the absolute deadline
    page = client.get("/devices")
    assert page.status_code == 200
    assert "This device" in page.text
    assert "Chrome on macOS" in page.text
    created = events_of(services, "session.created")
    assert len(created) == 1
    assert created[0].subject_id == member.id
    assert created[0].session_id == session_id_of(client, services, clock)


def test_unknown_email_gets_the_same_answer_and_no_mail(client, mailbox, member):
    known = request_code(client, member.email)
    unknown = request_code(client, "stranger@acme.test")
    assert known.status_code == unknown.status_code == 302
    assert known.location == unknown.location == "/login/code"
    page = client.get("/login/code")
    assert "If an account exists for <strong>stranger@acme.test</strong>" in page.text
    outbox_drained(client.application.extensions["holdfast"])
    assert mailbox.count(member.email) == 1
    assert mailbox.to("stranger@acme.test") == []


def test_invalid_email_is_a_form_message(client):
    page = client.get("/login")
    response = client.post("/login", data={"email": "nope", "csrf_token": csrf_from(page.text)})
    assert response.status_code == 200
    assert "not a valid email address" in response.text


def test_wrong_code_is_explained_counted_and_audited(client, mailbox, member, services):
    request_code(client, member.email)
    code = mailbox.last_code(member.email)
    page = client.get("/login/code")
    wrong = "000000" if code != "000000" else "111111"
    response = client.post("/login/code", data={"code": wrong, "csrf_token": csrf_from(page.text)})
    assert response.status_code == 200
    assert "That code is not right. 4 tries left." in response.text
    assert client.get_cookie("holdfast_session") is None
    assert len(events_of(services, "code.failed")) == 1
    with services.session() as db:
        assert db.scalar(select(Challenge.attempts)) == 1


@pytest.mark.parametrize("typed", ["12", "abcdef", "12345678"])
def test_input_that_cannot_be_a_code_is_refused_without_costing_a_try(
    client, mailbox, member, services, typed
):
    request_code(client, member.email)
    code = mailbox.last_code(member.email)
    page = client.get("/login/code")
    for _ in range(6):  # more than the five tries a code has
        response = client.post(
            "/login/code", data={"code": typed, "csrf_token": csrf_from(page.text)}
        )
        assert response.status_code == 200
        assert "A code is 6 digits, like 123 456." in response.text
        assert "tries left" not in response.text
    assert events_of(services, "code.failed") == []
    with services.session() as db:
        assert db.scalar(select(Challenge.attempts)) == 0
    signed = client.post("/login/code", data={"code": code, "csrf_token": csrf_from(page.text)})
    assert signed.status_code == 302
    assert client.get_cookie("holdfast_session") is not None


def test_forms_need_a_csrf_token(client, member):
    response = client.post("/login", data={"email": member.email})
    assert response.status_code == 400
    assert "form expired" in response.text


def test_codes_are_rate_limited_per_email(new_app, mailbox, make, tenant):
    app = new_app(RATELIMIT_CODES="3 per 10 minutes")
    client = app.test_client()
    for _ in range(3):
        assert request_code(client, "sam@acme.test").status_code == 302
    limited = request_code(client, "sam@acme.test")
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 600
    # The sign-in form again, saying why, with the address kept.
    assert "Too many codes were asked for this address" in limited.text
    assert 'value="sam@acme.test"' in limited.text
    assert request_code(client, "kim@acme.test").status_code == 302  # another address is fine


def test_codes_are_rate_limited_per_ip(new_app):
    app = new_app(RATELIMIT_CODES_PER_IP="2 per minute")
    client = app.test_client()
    assert request_code(client, "a@acme.test").status_code == 302
    assert request_code(client, "b@acme.test").status_code == 302
    assert request_code(client, "c@acme.test").status_code == 429


def test_sign_out_is_post_only_and_ends_the_session(signed_in, services, clock):
    session_id = session_id_of(signed_in, services, clock)
    assert signed_in.get("/logout").status_code == 405
    page = signed_in.get("/devices")
    response = signed_in.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 302
    assert response.location.startswith("/login?reason=logout")
    assert signed_in.get_cookie("holdfast_session") is None
    with services.session() as db:
        row = db.get_one(UserSession, session_id)
        assert row.end_reason == "logout"
    assert events_of(services, "session.ended")[-1].details["reason"] == "logout"
    assert signed_in.get("/devices").status_code == 302


def test_security_headers(signed_in):
    response = signed_in.get("/devices")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"


def test_a_new_session_and_new_flow_cookie_at_every_sign_in(
    client, mailbox, member, services, clock
):
    login(client, mailbox, member.email)
    first = session_id_of(client, services, clock)
    before = client.get_cookie("holdfast_flow")
    client.delete_cookie("holdfast_session")  # same browser, signing in again
    login(client, mailbox, member.email)
    second = session_id_of(client, services, clock)
    assert first != second
    assert (
        client.get_cookie("holdfast_flow") is None or client.get_cookie("holdfast_flow") != before
    )


def test_next_is_followed_only_for_local_paths(client, mailbox, member):
    page = client.get("/login?next=//evil.example/x")
    client.post(
        "/login?next=//evil.example/x",
        data={"email": member.email, "csrf_token": csrf_from(page.text)},
    )
    form = client.get("/login/code")
    response = client.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email), "csrf_token": csrf_from(form.text)},
    )
    assert response.location == "/devices"


@pytest.mark.parametrize("bad", ["%0D%0AX:%20y", "%09", "%00", "%7F", "%C2%85", "%E2%80%A8"])
def test_a_next_with_a_control_character_is_dropped_never_a_500(
    client, mailbox, member, services, clock, bad
):
    """urlsplit strips CR, LF and tab before it judges a URL; the raw string would then
    go into the Location header (a 500 that rolled the sign-in back)."""
    target = f"/login?next=/devices{bad}"
    page = client.get(target)
    client.post(target, data={"email": member.email, "csrf_token": csrf_from(page.text)})
    form = client.get("/login/code")
    signed = client.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email), "csrf_token": csrf_from(form.text)},
    )
    assert signed.status_code == 302 and signed.location == "/devices"
    first = session_id_of(client, services, clock)

    # The fresh sign-in page drops it the same way, from its query and from the flow.
    clock.advance(minutes=20)
    again = f"/login/again?next=/account/security{bad}"
    page = client.get(again)
    assert page.status_code == 200
    assert client.post(again, data={"send-csrf_token": csrf_from(page.text)}).status_code == 302
    form = client.get("/login/again")
    done = client.post(
        again,
        data={"code": mailbox.last_code(member.email, 2), "csrf_token": csrf_from(form.text)},
    )
    assert done.status_code == 302 and done.location == "/devices"
    assert session_id_of(client, services, clock) == first
    with services.session() as db:
        assert db.get_one(UserSession, first).authenticated_at == clock.now()


def test_cookies_are_secure_by_default(new_app, mailbox, member):
    app = new_app(COOKIE_SECURE=True)
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    response = login(client, mailbox, member.email)
    header = next(
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("holdfast_session=")
    )
    assert "Secure" in header


def test_short_or_placeholder_secret_is_refused(new_app):
    for secret in ("short", "changeme"):
        with pytest.raises(ConfigError, match="at least 32 bytes"):
            new_app(SECRET_KEY=secret)
    assert new_app(SECRET_KEY=SECRET)


def test_ten_parallel_submissions_of_the_right_code_give_one_session(
    app, mailbox, member, services
):
    clients = [app.test_client() for _ in range(10)]
    request_code(clients[0], member.email)
    code = mailbox.last_code(member.email)
    # Every client carries the same sign-in flow (same challenge) and its own CSRF token.
    flow = clients[0].get_cookie("holdfast_flow").value
    forms = []
    for each in clients:
        each.set_cookie("holdfast_flow", flow)
        forms.append(csrf_from(each.get("/login/code").text))

    def submit(pair):
        each, token = pair
        return each.post("/login/code", data={"code": code, "csrf_token": token}).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(submit, zip(clients, forms, strict=True)))
    assert statuses.count(302) == 1
    assert statuses.count(200) == 9  # "used already" on the form
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(UserSession)) == 1


def test_reauthentication_keeps_the_session_and_refreshes_its_sign_in_time(
    signed_in, mailbox, member, services, clock
):
    session_id = session_id_of(signed_in, services, clock)
    clock.advance(minutes=20)
    page = signed_in.get("/login/again?next=/devices")
    assert "Confirm it" in page.text
    sent = signed_in.post("/login/again", data={"send-csrf_token": csrf_from(page.text)})
    assert sent.status_code == 302
    form = signed_in.get("/login/again")
    done = signed_in.post(
        "/login/again",
        data={"code": mailbox.last_code(member.email, 2), "csrf_token": csrf_from(form.text)},
    )
    assert done.status_code == 302
    assert done.location == "/devices"
    assert session_id_of(signed_in, services, clock) == session_id  # same session
    with services.session() as db:
        assert db.get_one(UserSession, session_id).authenticated_at == clock.now()
    assert len(events_of(services, "session.reauthenticated")) == 1


def test_one_code_budget_per_address_across_form_resend_and_api(new_app, mailbox, member):
    app = new_app(RATELIMIT_CODES="3 per 10 minutes")
    client = app.test_client()
    assert request_code(client, member.email).status_code == 302  # the form
    page = client.get("/login/code")
    resent = client.post("/login/resend", data={"csrf_token": csrf_from(page.text)})
    assert resent.status_code == 302  # "send a new code"
    api = client.post("/api/auth/login", json={"email": member.email})
    assert api.status_code == 202  # the API: the third code for this address
    refused = client.post("/api/auth/login", json={"email": member.email})
    assert refused.status_code == 429
    assert refused.get_json()["code"] == "rate_limited"
    assert request_code(client, member.email).status_code == 429
