"""Authenticator apps and two-step sign-in over the pages: enrolment (secret shown once,
stored encrypted, recovery codes shown once), signing in with the emailed code and then
the app's code or a recovery code, fresh sign-in likewise, one step of drift, each code
once across nodes, removal after a fresh sign-in, "sign out my other sessions", and the
policy that requires an app of admins (enrolment right after the emailed code)."""

from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import select

from app import create_app
from app.core import events, mfa, totp
from app.mail import plain_text
from app.models import Event, MfaChallenge, RecoveryCode, User, UserSession
from testkit.values import UA_IPAD
from testkit.web import csrf_from, login, second_step, session_id_of

SECRET_ON_PAGE = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7 ]+)<')
RECOVERY_ON_PAGE = re.compile(r'<code class="recovery-code">([a-z2-9]{5}-[a-z2-9]{5})</code>')


def app_code(secret: str, clock, offset: int = 0) -> str:
    """What the person's phone shows."""
    return pyotp.TOTP(secret).at(clock.now(), counter_offset=offset)


def login_with_app(client, mailbox, email, secret, clock, **kw):
    """Both steps: the emailed code, then the app's code (a step later than any used)."""
    first = login(client, mailbox, email, **kw)
    assert first.status_code == 302 and first.location == "/login/mfa", first.text
    clock.advance(seconds=30)
    user_agent = kw.get("user_agent")
    headers = {"User-Agent": user_agent} if user_agent else {}
    done = second_step(client, app_code(secret, clock), **headers)
    assert done.status_code == 302, done.text
    return done


def start(client):
    page = client.get("/account/security")
    return client.post("/account/security/totp", data={"csrf_token": csrf_from(page.text)})


def enrol(client, clock, **extra) -> str:
    return enrol_with_codes(client, clock, **extra)[0]


def enrol_with_codes(client, clock, **extra) -> tuple[str, list[str]]:
    """Add an app on the security page; (its secret, the ten recovery codes shown)."""
    started = start(client)
    secret = SECRET_ON_PAGE.search(started.text).group(1).replace(" ", "")
    done = client.post(
        "/account/security/totp/confirm",
        data={"code": app_code(secret, clock), "csrf_token": csrf_from(started.text), **extra},
    )
    assert done.status_code == 200, done.text
    codes = RECOVERY_ON_PAGE.findall(done.text)
    assert len(codes) == 10, done.text
    return secret, codes


def kinds(services) -> list[str]:
    with services.session() as db:
        return list(db.scalars(select(Event.kind).order_by(Event.id)))


def test_enrolment_shows_the_secret_once_and_a_code_turns_it_on(signed_in, services, clock, member):
    page = signed_in.get("/account/security")
    assert page.status_code == 200
    assert 'id="add-totp"' in page.text

    started = start(signed_in)
    assert started.status_code == 200
    assert "Two-step sign-in" in page.text
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
    # The answer shows the ten recovery codes, this once.
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    codes = RECOVERY_ON_PAGE.findall(done.text)
    assert len(set(codes)) == 10
    assert 'href="/account/security"' in done.text
    page = signed_in.get("/account/security")
    assert "Authenticator app added" in page.text and 'id="remove-totp"' in page.text
    assert 'id="codes-left">10 left<' in page.text
    assert not any(code in page.text for code in codes)
    with services.session() as db:
        user = db.get_one(User, member.id)
        assert user.totp_enabled_at == clock.now()
        assert user.totp_last_step == totp.step_at(clock.now())
        stored = db.scalars(select(RecoveryCode).where(RecoveryCode.user_id == member.id)).all()
        assert len(stored) == 10
        assert not any(code.replace("-", "") in row.code_hash for row in stored for code in codes)
    assert kinds(services)[-3:] == ["totp.enrolment_started", "totp.enabled", "recovery_codes.made"]


def ask_code(client, email):
    page = client.get("/login")
    client.post("/login", data={"email": email, "csrf_token": csrf_from(page.text)})
    return client.get("/login/code")


def test_sign_in_takes_the_emailed_code_and_then_the_app_code(
    app, signed_in, mailbox, services, clock, member
):
    """Issue 21, finding 3: with an app, the emailed code alone no longer signs in (it
    used to be accepted in place of the app's code, and the app's code in place of it)."""
    secret = enrol(signed_in, clock)
    clock.advance(seconds=30)
    other = app.test_client()

    # The app's code in the emailed code's field is just a wrong code now.
    form = ask_code(other, member.email)
    assert "authenticator app" not in form.text
    wrong = other.post(
        "/login/code", data={"code": app_code(secret, clock), "csrf_token": csrf_from(form.text)}
    )
    assert wrong.status_code == 200 and "That code is not right" in wrong.text

    # The emailed code is the first step: no session yet, the app's code comes next.
    first = other.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email, 2), "csrf_token": csrf_from(form.text)},
    )
    assert first.status_code == 302 and first.location == "/login/mfa"
    assert other.get_cookie("holdfast_session") is None
    assert other.get("/devices").status_code == 302
    assert other.get("/login/code").location == "/login/mfa"  # the code is used up
    step = other.get("/login/mfa")
    assert "One more step" in step.text and "recovery codes" in step.text

    refused = second_step(other, "000000")
    assert refused.status_code == 200 and "That code is not right. 4 tries left." in refused.text
    answer = second_step(other, app_code(secret, clock))
    assert answer.status_code == 302 and answer.location == "/devices"
    assert other.get("/devices").status_code == 200
    with services.session() as db:
        accepted = db.scalars(select(Event).where(Event.kind == "totp.accepted")).one()
        assert (accepted.subject_id, accepted.details) == (member.id, {"drift": 0})
        failed = db.scalars(select(Event).where(Event.kind == "mfa.failed")).one()
        assert failed.details == {"purpose": "sign_in", "attempts": 1}
        step_row = db.scalars(select(MfaChallenge)).one()
        assert step_row.consumed_at == clock.now() and step_row.attempts == 1

    # The same app code a second time is refused like any wrong code.
    third = app.test_client()
    form = ask_code(third, member.email)
    third.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email, 3), "csrf_token": csrf_from(form.text)},
    )
    replay = second_step(third, app_code(secret, clock))
    assert replay.status_code == 200 and "That code is not right" in replay.text
    assert third.get_cookie("holdfast_session") is None


def test_five_wrong_app_codes_end_the_step(app, signed_in, mailbox, services, clock, member):
    enrol(signed_in, clock)
    other = app.test_client()
    form = ask_code(other, member.email)
    other.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email, 2), "csrf_token": csrf_from(form.text)},
    )
    for _ in range(4):
        assert "That code is not right" in second_step(other, "000000").text
    locked = second_step(other, "000000")
    assert locked.status_code == 302 and locked.location == "/login"
    assert "Too many wrong codes" in other.get("/login").text
    assert other.get("/login/mfa").location == "/login"
    assert other.get_cookie("holdfast_session") is None


def test_a_recovery_code_signs_in_once_and_is_mailed(
    app, signed_in, mailbox, services, clock, member
):
    _secret, codes = enrol_with_codes(signed_in, clock)
    other = app.test_client()
    form = ask_code(other, member.email)
    other.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email, 2), "csrf_token": csrf_from(form.text)},
    )
    answer = second_step(other, codes[3].upper())  # as read off paper: case does not matter
    assert answer.status_code == 302 and answer.location == "/devices"
    assert "Signed in with a recovery code" in other.get("/devices").text
    [mail] = [
        m
        for m in mailbox.wait_for(member.email, 3)
        if m["Subject"] == "A recovery code was used to sign in"
    ]
    assert "You have 9 unused recovery codes left." in plain_text(mail)
    with services.session() as db:
        used = db.scalars(select(Event).where(Event.kind == "recovery_code.used")).one()
        assert (used.subject_id, used.details) == (member.id, {"left": 9})

    # Used up: the same code never works again.
    third = app.test_client()
    form = ask_code(third, member.email)
    third.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email, 4), "csrf_token": csrf_from(form.text)},
    )
    again = second_step(third, codes[3])
    assert again.status_code == 200 and "That code is not right" in again.text


def test_new_recovery_codes_need_a_fresh_sign_in_and_void_the_old(
    app, signed_in, mailbox, services, clock, member
):
    secret, old = enrol_with_codes(signed_in, clock)
    clock.advance(minutes=16)
    page = signed_in.get("/account/security")
    stale = signed_in.post(
        "/account/security/recovery-codes", data={"csrf_token": csrf_from(page.text)}
    )
    assert stale.status_code == 302 and stale.location.startswith("/login/again")
    # Fresh: the emailed code, then the app's code.
    again = signed_in.get(stale.location)
    signed_in.post(stale.location, data={"send-csrf_token": csrf_from(again.text)})
    form = signed_in.get("/login/again")
    step = signed_in.post(
        "/login/again",
        data={"code": mailbox.last_code(member.email, 2), "csrf_token": csrf_from(form.text)},
    )
    assert step.status_code == 302 and step.location == "/login/again/mfa"
    clock.advance(seconds=30)
    back = second_step(signed_in, app_code(secret, clock), path="/login/again/mfa")
    assert back.status_code == 302 and back.location.startswith("/account/security")
    page = signed_in.get("/account/security")
    fresh = signed_in.post(
        "/account/security/recovery-codes", data={"csrf_token": csrf_from(page.text)}
    )
    assert fresh.status_code == 200 and "Your earlier codes no longer work." in fresh.text
    new = RECOVERY_ON_PAGE.findall(fresh.text)
    assert len(new) == 10 and not set(new) & set(old)
    with services.session() as db:
        user = db.get_one(User, member.id)
        assert not mfa.use_recovery_code(
            db, services.hasher, user, old[0], now=clock.now(), origin=events.SYSTEM
        )
        assert mfa.use_recovery_code(
            db, services.hasher, user, new[0], now=clock.now(), origin=events.SYSTEM
        )
        made = db.scalars(
            select(Event).where(Event.kind == "recovery_codes.made").order_by(Event.id)
        ).all()
        assert [e.details["replaced"] for e in made] == [0, 10]


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
    login_with_app(ipad, mailbox, member.email, secret, clock, user_agent=UA_IPAD)
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

    # Confirm it's you: the emailed code, then the app's code, and come back.
    again = signed_in.get(answer.location)
    signed_in.post(answer.location, data={"send-csrf_token": csrf_from(again.text)})
    form = signed_in.get("/login/again")
    first = signed_in.post(
        "/login/again", data={"code": app_code(secret, clock), "csrf_token": csrf_from(form.text)}
    )
    assert first.status_code == 200 and "That code is not right" in first.text  # not alone
    first = signed_in.post(
        "/login/again",
        data={"code": mailbox.last_code(member.email, 3), "csrf_token": csrf_from(form.text)},
    )
    assert first.status_code == 302 and first.location == "/login/again/mfa"
    with services.session() as db:  # not fresh yet
        assert db.get_one(
            UserSession, session_id_of(signed_in, services, clock)
        ).authenticated_at < (clock.now())
    back = second_step(signed_in, app_code(secret, clock), path="/login/again/mfa")
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
        assert db.scalars(select(RecoveryCode)).all() == []  # they go with the app
    assert ipad.get("/devices").status_code == 302
    # Two-step sign-in is off again: the emailed code alone signs in.
    assert login(app.test_client(), mailbox, member.email).location == "/devices"


def test_adding_can_sign_out_other_sessions(app, signed_in, mailbox, services, clock, member):
    ipad = app.test_client()
    login(ipad, mailbox, member.email, user_agent=UA_IPAD)
    started = start(signed_in)
    secret = SECRET_ON_PAGE.search(started.text).group(1).replace(" ", "")
    done = signed_in.post(
        "/account/security/totp/confirm",
        data={
            "code": app_code(secret, clock),
            "csrf_token": csrf_from(started.text),
            "sign_out_others": "y",
        },
    )
    # Said on the page that shows the recovery codes.
    assert done.status_code == 200 and "Signed out 1 other session." in done.text
    assert ipad.get("/devices").status_code == 302
    assert signed_in.get("/devices").status_code == 200


@pytest.fixture
def admin(make, tenant):
    make.policy(tenant, require_totp_for_admins=True)
    return make.user("ada@acme.test", tenant, role="admin")


def test_an_admin_without_an_app_adds_one_right_after_the_emailed_code(
    client, app, mailbox, admin, services, clock
):
    """The tenant requires an app of admins and this admin has none: after the emailed
    code comes adding one (Keycloak's required action); until it is done there is no
    session, so no page but the enrolment is reachable."""
    page = client.get("/login?next=/admin/alerts")
    client.post(
        "/login?next=/admin/alerts",
        data={"email": admin.email, "csrf_token": csrf_from(page.text)},
    )
    form = client.get("/login/code")
    first = client.post(
        "/login/code",
        data={"code": mailbox.last_code(admin.email), "csrf_token": csrf_from(form.text)},
    )
    assert first.status_code == 302 and first.location == "/login/enrol"
    assert client.get_cookie("holdfast_session") is None
    assert client.get("/admin/alerts").location.startswith("/login")
    assert client.get("/devices").location.startswith("/login")
    assert client.get("/login/mfa").location == "/login"  # not a step it may skip to
    page = client.get("/login/enrol")
    assert "requires admins to sign in with an authenticator app" in page.text
    assert 'id="totp-secret"' not in page.text  # the key only in the answer to a POST

    started = client.post("/login/enrol", data={"csrf_token": csrf_from(page.text)})
    secret = SECRET_ON_PAGE.search(started.text).group(1).replace(" ", "")
    wrong = client.post(
        "/login/enrol/confirm", data={"code": "000000", "csrf_token": csrf_from(started.text)}
    )
    assert wrong.status_code == 422 and "That code is not right" in wrong.text
    assert secret not in wrong.text
    done = client.post(
        "/login/enrol/confirm",
        data={"code": app_code(secret, clock), "csrf_token": csrf_from(started.text)},
    )
    assert done.status_code == 200
    codes = RECOVERY_ON_PAGE.findall(done.text)
    assert len(codes) == 10 and 'href="/admin/alerts"' in done.text
    assert client.get_cookie("holdfast_session") is not None
    assert client.get("/admin/alerts").status_code == 200
    with services.session() as db:
        enabled = db.scalars(select(Event).where(Event.kind == "totp.enabled")).one()
        assert enabled.details == {"other_sessions_ended": 0, "at_sign_in": True}
        assert db.scalars(select(MfaChallenge)).one().purpose == "enrol"

    # The next sign-in asks for the app's code after the emailed one.
    clock.advance(minutes=1)
    later = app.test_client()
    assert login(later, mailbox, admin.email).location == "/login/mfa"
    assert second_step(later, app_code(secret, clock)).location == "/devices"
    assert later.get("/admin/alerts").status_code == 200


def test_an_admin_signed_in_before_the_requirement_is_taken_to_enrolment(
    client, mailbox, make, tenant, services, clock
):
    """A session that started before the tenant required an app: admin pages send the
    admin to add one first (JSON: 403 totp_required)."""
    ada = make.user("ada@acme.test", tenant, role="admin")
    login(client, mailbox, ada.email)
    make.policy(tenant, require_totp_for_admins=True)
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
    assert done.status_code == 200 and 'href="/admin/alerts"' in done.text
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


def test_the_second_step_and_its_recovery_mail_are_german(
    app, signed_in, mailbox, services, clock, member
):
    """A person whose language is German: the second-step page, the core's wrong-code
    count, the flash after a recovery code and the mail it sends (through the real SMTP
    server) are German."""
    _secret, codes = enrol_with_codes(signed_in, clock)
    with services.session(write=True) as db:
        db.get_one(User, member.id).language = "de"
        db.commit()
    other = app.test_client()
    other.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de"  # the page before sign-in: the browser's
    form = ask_code(other, member.email)
    other.post(
        "/login/code",
        data={"code": mailbox.last_code(member.email, 2), "csrf_token": csrf_from(form.text)},
    )
    step = other.get("/login/mfa").text
    assert "<h1>Noch ein Schritt</h1>" in step
    assert "Kein Smartphone zur Hand?" in step and "<code>abcde-fghjk</code>" in step
    assert "One more step" not in step
    refused = second_step(other, "000000")
    assert "Dieser Code stimmt nicht. Noch 4 Versuche." in refused.text
    answer = second_step(other, codes[0])
    assert answer.status_code == 302
    assert "Mit einem Wiederherstellungscode angemeldet" in other.get("/devices").text
    [mail] = [
        m
        for m in mailbox.wait_for(member.email, 3)
        if m["Subject"] == "Zur Anmeldung wurde ein Wiederherstellungscode verwendet"
    ]
    text = plain_text(mail)
    assert "Sie haben noch 9 unbenutzte Wiederherstellungscodes." in text
    assert "recovery" not in text
