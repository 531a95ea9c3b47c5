"""Authenticator apps: enrolment (secret shown once, stored encrypted), signing in with the
app's code, one step of drift, each code once across nodes, removal after a fresh
sign-in, "sign out my other sessions", and the policy that requires it of admins."""

from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import select

from app import create_app
from app.core import totp
from app.models import Event, User, UserSession
from tests.conftest import UA_IPAD, csrf_from, login, session_id_of

SECRET_ON_PAGE = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7 ]+)<')


def app_code(secret: str, clock, offset: int = 0) -> str:
    """What the person's phone shows."""
    return pyotp.TOTP(secret).at(clock.now(), counter_offset=offset)


def start(client):
    page = client.get("/account/security")
    return client.post("/account/security/totp", data={"csrf_token": csrf_from(page.text)})


def enrol(client, clock, **extra) -> str:
    started = start(client)
    secret = SECRET_ON_PAGE.search(started.text).group(1).replace(" ", "")
    done = client.post(
        "/account/security/totp/confirm",
        data={"code": app_code(secret, clock), "csrf_token": csrf_from(started.text), **extra},
    )
    assert done.status_code == 302, done.text
    return secret


def kinds(services) -> list[str]:
    with services.session() as db:
        return list(db.scalars(select(Event.kind).order_by(Event.id)))


def test_enrolment_shows_the_secret_once_and_a_code_turns_it_on(signed_in, services, clock, member):
    page = signed_in.get("/account/security")
    assert page.status_code == 200
    assert "Authenticator app" in page.text and 'id="add-totp"' in page.text

    started = start(signed_in)
    assert started.status_code == 200
    secret = SECRET_ON_PAGE.search(started.text).group(1).replace(" ", "")
    assert len(secret) == 32
    assert "<svg" in started.text and 'class="segno"' in started.text
    assert started.headers["Cache-Control"] == "no-store"
    with services.session() as db:
        user = db.get_one(User, member.id)
        assert user.totp_enabled_at is None  # pending until a code proves the app has it
        assert secret.encode() not in user.totp_secret
        assert totp.code_for(services.hasher, user, clock.now()) == app_code(secret, clock)
    assert secret not in signed_in.get("/account/security").text  # shown once

    wrong = signed_in.post(
        "/account/security/totp/confirm",
        data={"code": "000000", "csrf_token": csrf_from(started.text)},
    )
    assert wrong.status_code == 422
    assert "That code is not right" in wrong.text
    assert secret not in wrong.text

    done = signed_in.post(
        "/account/security/totp/confirm",
        data={"code": app_code(secret, clock), "csrf_token": csrf_from(started.text)},
    )
    assert done.status_code == 302 and done.location == "/account/security"
    page = signed_in.get("/account/security")
    assert "Authenticator app added" in page.text and 'id="remove-totp"' in page.text
    with services.session() as db:
        user = db.get_one(User, member.id)
        assert user.totp_enabled_at == clock.now()
        assert user.totp_last_step == totp.step_at(clock.now())
    assert kinds(services)[-2:] == ["totp.enrolment_started", "totp.enabled"]


def test_sign_in_with_the_app_code_instead_of_the_emailed_one(
    app, signed_in, mailbox, services, clock, member
):
    secret = enrol(signed_in, clock)
    clock.advance(seconds=30)
    other = app.test_client()
    page = other.get("/login")
    other.post("/login", data={"email": member.email, "csrf_token": csrf_from(page.text)})
    form = other.get("/login/code")
    assert "Use your authenticator app" in form.text
    code = app_code(secret, clock)
    assert code != mailbox.last_code(member.email, 2)
    answer = other.post("/login/code", data={"code": code, "csrf_token": csrf_from(form.text)})
    assert answer.status_code == 302 and answer.location == "/devices"
    assert other.get("/devices").status_code == 200
    with services.session() as db:
        accepted = db.scalars(select(Event).where(Event.kind == "totp.accepted")).one()
        assert (accepted.subject_id, accepted.details) == (member.id, {"drift": 0})

    # The same app code a second time is refused like any wrong code.
    third = app.test_client()
    page = third.get("/login")
    third.post("/login", data={"email": member.email, "csrf_token": csrf_from(page.text)})
    form = third.get("/login/code")
    replay = third.post("/login/code", data={"code": code, "csrf_token": csrf_from(form.text)})
    assert replay.status_code == 200 and "That code is not right" in replay.text
    assert third.get_cookie("holdfast_session") is None


def enabled_user(services, clock, member) -> str:
    """Arrange an enabled app directly; returns its secret."""
    secret = pyotp.random_base32()
    with services.session(write=True) as db:
        user = db.get_one(User, member.id)
        user.totp_secret = totp._seal(services.hasher, user.id, secret)
        user.totp_enabled_at = clock.now()
        db.commit()
    return secret


def verify(services, member, code, clock) -> bool:
    with services.session(write=True) as db:
        user = db.get_one(User, member.id)
        accepted = totp.verify(db, services.hasher, user, code, now=clock.now())
        db.commit()
        return accepted


def test_one_step_of_drift_each_way_and_never_backwards(services, clock, member):
    secret = enabled_user(services, clock, member)
    assert not verify(services, member, app_code(secret, clock, -2), clock)  # a minute old
    assert verify(services, member, app_code(secret, clock, -1), clock)  # the phone is slow
    assert not verify(services, member, app_code(secret, clock, -1), clock)  # used
    assert verify(services, member, app_code(secret, clock, +1), clock)  # the phone is fast
    # Once a later step was used, an earlier code never passes again.
    assert not verify(services, member, app_code(secret, clock), clock)
    assert not verify(services, member, app_code(secret, clock, +2), clock)
    clock.advance(seconds=60)
    assert verify(services, member, app_code(secret, clock), clock)
    assert not verify(services, member, "12345", clock)
    assert not verify(services, member, "not a code", clock)


def test_each_code_is_accepted_once_across_nodes(services, clock, member, app_config, tmp_path):
    secret = enabled_user(services, clock, member)
    other_node = create_app(app_config, instance_path=tmp_path / "node-b")
    try:
        node_b = other_node.extensions["holdfast"]
        code = app_code(secret, clock)
        with node_b.session() as b:
            stale = b.get_one(User, member.id)  # node B has read the row: no step used yet
            b.commit()
            assert stale.totp_last_step is None
            with services.session(write=True) as a:
                assert totp.verify(
                    a, services.hasher, a.get_one(User, member.id), code, now=clock.now()
                )
                a.commit()
            # Node B still holds its old copy; the conditional UPDATE checks the row itself.
            assert not totp.verify(b, node_b.hasher, stale, code, now=clock.now())
            b.commit()
    finally:
        other_node.extensions["holdfast"].close()


def test_a_secret_under_another_key_or_person_does_not_open(services, clock, member, make, tenant):
    secret = enabled_user(services, clock, member)
    other = make.user("kim@acme.test", tenant)
    with services.session(write=True) as db:
        sealed = db.get_one(User, member.id).totp_secret
        moved = db.get_one(User, other.id)
        moved.totp_secret = sealed  # copied to another row: the associated data differs
        moved.totp_enabled_at = clock.now()
        db.commit()
    with services.session(write=True) as db:
        assert not totp.verify(
            db,
            services.hasher,
            db.get_one(User, other.id),
            app_code(secret, clock),
            now=clock.now(),
        )


def test_adding_needs_a_fresh_sign_in(signed_in, clock, services, member):
    clock.advance(minutes=16)
    answer = start(signed_in)
    assert answer.status_code == 302
    assert answer.location.startswith("/login/again?next=/account/security")
    with services.session() as db:
        assert db.get_one(User, member.id).totp_secret is None


def test_removing_needs_a_fresh_sign_in_and_can_sign_out_other_sessions(
    app, signed_in, mailbox, services, clock, member
):
    secret = enrol(signed_in, clock)
    ipad = app.test_client()
    login(ipad, mailbox, member.email, user_agent=UA_IPAD)
    ipad_session = session_id_of(ipad, services, clock)

    clock.advance(minutes=16)
    page = signed_in.get("/account/security")
    answer = signed_in.post(
        "/account/security/totp/remove",
        data={"csrf_token": csrf_from(page.text), "sign_out_others": "y"},
    )
    assert answer.status_code == 302 and answer.location.startswith("/login/again")
    with services.session() as db:
        assert db.get_one(User, member.id).totp_enabled_at is not None

    # Confirm it's you, with the app's code this time, and come back.
    again = signed_in.get(answer.location)
    signed_in.post(answer.location, data={"send-csrf_token": csrf_from(again.text)})
    form = signed_in.get("/login/again")
    back = signed_in.post(
        "/login/again", data={"code": app_code(secret, clock), "csrf_token": csrf_from(form.text)}
    )
    assert back.status_code == 302 and back.location == "/account/security"

    page = signed_in.get("/account/security")
    done = signed_in.post(
        "/account/security/totp/remove",
        data={"csrf_token": csrf_from(page.text), "sign_out_others": "y"},
    )
    assert done.status_code == 302
    page = signed_in.get("/account/security")
    assert "Authenticator app removed" in page.text and "Signed out 1 other session." in page.text
    with services.session() as db:
        user = db.get_one(User, member.id)
        assert (user.totp_secret, user.totp_enabled_at, user.totp_last_step) == (None, None, None)
        assert db.get_one(UserSession, ipad_session).end_reason == "revoked_by_user"
        removed = db.scalars(select(Event).where(Event.kind == "totp.removed")).one()
        assert removed.details == {"was_enabled": True, "other_sessions_ended": 1}
    assert ipad.get("/devices").status_code == 302


def test_adding_can_sign_out_other_sessions(app, signed_in, mailbox, services, clock, member):
    ipad = app.test_client()
    login(ipad, mailbox, member.email, user_agent=UA_IPAD)
    enrol(signed_in, clock, sign_out_others="y")
    assert "Signed out 1 other session." in signed_in.get("/account/security").text
    assert ipad.get("/devices").status_code == 302
    assert signed_in.get("/devices").status_code == 200


@pytest.fixture
def admin(make, tenant):
    make.policy(tenant, require_totp_for_admins=True)
    return make.user("ada@acme.test", tenant, role="admin")


def test_an_admin_without_an_app_is_taken_to_enrolment_first(
    client, mailbox, admin, services, clock
):
    login(client, mailbox, admin.email)
    answer = client.get("/admin/alerts")
    assert answer.status_code == 302
    assert answer.location.startswith("/account/security?next=/admin/alerts")
    page = client.get(answer.location)
    assert "requires admins to use an authenticator app" in page.text
    refused = client.get("/admin/alerts", headers={"Accept": "application/json"})
    assert refused.status_code == 403 and refused.json["code"] == "totp_required"

    started = client.post(
        "/account/security/totp",
        data={"csrf_token": csrf_from(page.text), "next": "/admin/alerts"},
    )
    secret = SECRET_ON_PAGE.search(started.text).group(1).replace(" ", "")
    done = client.post(
        "/account/security/totp/confirm",
        data={
            "code": app_code(secret, clock),
            "csrf_token": csrf_from(started.text),
            "next": "/admin/alerts",
        },
    )
    assert done.status_code == 302 and done.location == "/admin/alerts"
    assert client.get("/admin/alerts").status_code == 200


def test_the_requirement_leaves_members_alone(client, mailbox, admin, member):
    login(client, mailbox, member.email)
    assert client.get("/devices").status_code == 200
    page = client.get("/account/security")
    assert "requires admins" not in page.text


def test_confirming_without_starting_is_refused(signed_in, services, member):
    page = signed_in.get("/account/security")
    answer = signed_in.post(
        "/account/security/totp/confirm",
        data={"code": "123456", "csrf_token": csrf_from(page.text)},
    )
    assert answer.status_code == 422 and "Start adding an authenticator app first" in answer.text
    with services.session() as db:
        assert db.get_one(User, member.id).totp_enabled_at is None
