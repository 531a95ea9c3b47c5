"""The passkey API and page routes (app.web.passkeys), with the software authenticator of
test_passkeys_core.py: answers, audit events, stored state, mail."""

from __future__ import annotations

import pyotp
from sqlalchemy import select

from app.core import events, mfa, totp
from app.models import Event, User, UserSession
from testkit.api import api_sign_in, ask_code, assert_error, bearer, token_for
from testkit.rows import give_app
from testkit.web import csrf_from, login, second_step
from testkit.webauthn import SoftAuthenticator, b64, passkey_sign_in, register


def test_add_list_rename_and_remove_passkeys(client, mailbox, member, db, clock):
    token = token_for(client, mailbox, member.email)
    device = SoftAuthenticator()
    added = register(client, token, device, name="  Sam's   phone ")
    assert added.status_code == 201, added.text
    assert added.json["name"] == "Sam's phone"
    assert added.json["lastUsedAt"] is None and added.json["createdAt"].endswith("Z")
    assert added.json["id"].startswith("pkey_")
    assert mailbox.newest(member.email, "A passkey was added")
    listed = client.get("/api/account/passkeys", headers=bearer(token)).json["passkeys"]
    assert [p["id"] for p in listed] == [added.json["id"]]
    event = db.scalars(select(Event).where(Event.kind == "passkey.added")).one()
    assert event.subject_id == member.id and event.details["passkey_id"] == added.json["id"]
    db.rollback()  # (the test's session takes the write lock: let the app write)

    # The same authenticator again: excluded in the options, refused if sent anyway.
    options = client.post("/api/account/passkeys/options", headers=bearer(token)).json
    excluded = options["publicKey"]["excludeCredentials"]
    assert [c["id"] for c in excluded] == [b64(device.credential_id)]
    again = client.post(
        "/api/account/passkeys",
        json={
            "challengeId": options["challengeId"],
            "credential": device.create(options["publicKey"]),
        },
        headers=bearer(token),
    )
    assert_error(again, 422, "validation_error")

    removed = client.delete(f"/api/account/passkeys/{added.json['id']}", headers=bearer(token))
    assert removed.status_code == 204
    assert client.get("/api/account/passkeys", headers=bearer(token)).json == {"passkeys": []}
    assert mailbox.newest(member.email, "A passkey was removed")
    gone = client.delete(f"/api/account/passkeys/{added.json['id']}", headers=bearer(token))
    assert_error(gone, 404, "not_found")


def test_creation_options_ask_for_a_discoverable_verified_credential(client, mailbox, member):
    token = token_for(client, mailbox, member.email)
    answer = client.post("/api/account/passkeys/options", headers=bearer(token))
    options = answer.json["publicKey"]
    assert options["rp"] == {"name": "Holdfast", "id": "localhost"}
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none" and options["user"]["name"] == member.email


def test_adding_or_removing_needs_a_recent_sign_in(client, mailbox, member, clock):
    token = token_for(client, mailbox, member.email)
    added = register(client, token, SoftAuthenticator())
    clock.advance(minutes=16)
    stale = client.post("/api/account/passkeys/options", headers=bearer(token))
    assert_error(stale, 401, "fresh_login_required")
    kept = client.delete(f"/api/account/passkeys/{added.json['id']}", headers=bearer(token))
    assert_error(kept, 401, "fresh_login_required")


def test_someone_elses_passkey_is_not_found(client, mailbox, member, make, tenant):
    other = make.user("kim@acme.test", tenant)
    mine = register(client, token_for(client, mailbox, member.email), SoftAuthenticator())
    theirs = token_for(client, mailbox, other.email)
    answer = client.delete(f"/api/account/passkeys/{mine.json['id']}", headers=bearer(theirs))
    assert_error(answer, 404, "not_found")


def test_sign_in_with_a_passkey_gives_a_session_like_a_code(client, mailbox, member, db):
    device = SoftAuthenticator()
    register(client, token_for(client, mailbox, member.email), device)
    mails = mailbox.count(member.email)
    answer = passkey_sign_in(client, device, deviceName="Sam's laptop")
    assert answer.status_code == 201, answer.text
    assert answer.json["token"] and answer.json["deviceInfo"]["name"] == "Sam's laptop"
    session = db.get_one(UserSession, answer.json["sessionId"])
    assert session.sign_in_method == "passkey" and session.user_id == member.id
    assert client.get("/api/auth/session", headers=bearer(answer.json["token"])).json["valid"]
    assert mailbox.count(member.email) == mails  # no code mail
    used = db.scalars(select(Event).where(Event.kind == "passkey.used")).one()
    assert used.session_id == session.id


def test_a_passkey_needs_no_second_factor_even_with_an_app(client, mailbox, member, services, db):
    device = SoftAuthenticator()
    register(client, token_for(client, mailbox, member.email), device)
    with services.session(write=True) as s:
        user = s.get_one(User, member.id)
        user.totp_secret = totp._seal(services.hasher, user.id, pyotp.random_base32())
        user.totp_enabled_at = services.clock.now()
        s.commit()
    answer = passkey_sign_in(client, device)
    assert answer.status_code == 201, answer.text


def test_bad_passkey_input_is_a_clear_error(client, mailbox, member):
    assert_error(
        client.post("/api/auth/passkey/options", json={"tenant": "nope"}), 422, "validation_error"
    )
    assert_error(
        client.post("/api/auth/passkey/options", json={"tenant": 3}), 422, "validation_error"
    )
    # The options body may be left out altogether; one that is sent must be JSON.
    bare = client.post("/api/auth/passkey/options")
    assert bare.status_code == 200 and bare.json["publicKey"]["challenge"]
    assert_error(client.post("/api/auth/passkey/options", data="x"), 415, "unsupported_media_type")
    options = client.post("/api/auth/passkey/options", json={}).json
    not_object = client.post(
        "/api/auth/passkey/verify", json={"challengeId": options["challengeId"], "credential": "x"}
    )
    assert_error(not_object, 422, "validation_error")
    garbage = client.post(
        "/api/auth/passkey/verify",
        json={"challengeId": options["challengeId"], "credential": {"id": 1, "response": []}},
    )
    assert_error(garbage, 400, "invalid_passkey")
    unknown = client.post(
        "/api/auth/passkey/verify", json={"challengeId": "pkc_nope", "credential": {}}
    )
    assert_error(unknown, 400, "invalid_passkey")


def test_a_disabled_account_cannot_sign_in_with_its_passkey(
    client, mailbox, member, make, tenant, services
):
    device = SoftAuthenticator()
    register(client, token_for(client, mailbox, member.email), device)
    with services.session(write=True) as s:
        s.get_one(User, member.id).disabled = True
        s.commit()
    assert_error(passkey_sign_in(client, device), 401, "invalid_session")


def test_the_sign_in_page_route_sets_the_cookie_and_needs_the_csrf_token(
    client, mailbox, member, db
):
    device = SoftAuthenticator()
    register(client, token_for(client, mailbox, member.email), device)
    page = client.get("/login?next=/account/security")
    token = csrf_from(page.text)
    options = client.post("/api/auth/passkey/options", json={}).json
    body = {
        "challengeId": options["challengeId"],
        "credential": device.get(options["publicKey"]),
        "next": "/account/security",
    }
    refused = client.post("/login/passkey", json=body, headers={"Accept": "application/json"})
    assert refused.status_code == 400 and refused.json["code"] == "csrf_failed"
    assert client.get_cookie("holdfast_session") is None
    options = client.post("/api/auth/passkey/options", json={}).json
    body.update(challengeId=options["challengeId"], credential=device.get(options["publicKey"]))
    answer = client.post(
        "/login/passkey", json=body, headers={"X-CSRFToken": token, "Accept": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json == {"redirect": "/account/security"}
    assert client.get_cookie("holdfast_session") is not None
    assert client.get("/account/security").status_code == 200


def test_every_session_says_how_it_was_signed_in(client, mailbox, member, services, db):
    assert login(client, mailbox, member.email).status_code == 302
    secret = pyotp.random_base32()
    with services.session(write=True) as s:
        user = s.get_one(User, member.id)
        user.totp_secret = totp._seal(services.hasher, user.id, secret)
        user.totp_enabled_at = services.clock.now()
        codes = mfa.make_recovery_codes(
            s, services.hasher, user, now=services.clock.now(), origin=events.SYSTEM
        )
        s.commit()
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/devices").text)})
    services.clock.advance(seconds=31)  # (the sessions are listed by creation time)
    login(client, mailbox, member.email)
    assert second_step(client, pyotp.TOTP(secret).at(services.clock.now())).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/devices").text)})
    services.clock.advance(seconds=31)
    login(client, mailbox, member.email)
    assert second_step(client, codes[0]).status_code == 302
    methods = [
        s.sign_in_method
        for s in db.scalars(select(UserSession).order_by(UserSession.created_at, UserSession.id))
    ]
    assert methods == ["code", "app", "recovery"]
    created = db.scalars(select(Event).where(Event.kind == "session.created").order_by(Event.id))
    assert [e.details["method"] for e in created] == methods


def test_an_admins_passkey_meets_the_second_factor_rule(client, mailbox, make, tenant):
    admin = make.user("ada@acme.test", tenant, role="admin")
    device = SoftAuthenticator()
    assert register(client, token_for(client, mailbox, admin.email), device).status_code == 201
    make.policy(tenant, require_totp_for_admins=True)
    # The emailed code alone no longer signs this admin in (and is not used up)...
    challenge_id, code = ask_code(client, mailbox, admin.email)
    refused = client.post("/api/auth/verify", json={"challengeId": challenge_id, "code": code})
    assert_error(refused, 403, "passkey_required")
    # ...the passkey does, straight to the admin API, with no app.
    answer = passkey_sign_in(client, device)
    assert answer.status_code == 201, answer.text
    policy = client.get("/api/admin/policy", headers=bearer(answer.json["token"]))
    assert policy.status_code == 200 and policy.json["requireTotpForAdmins"] is True
    assert policy.json["allowPasskeys"] is True and policy.json["requirePasskeys"] is False


def test_an_admin_with_neither_still_adds_an_app(client, mailbox, make, tenant):
    admin = make.user("ada@acme.test", tenant, role="admin")
    make.policy(tenant, require_totp_for_admins=True)
    challenge_id, code = ask_code(client, mailbox, admin.email)
    answer = client.post("/api/auth/verify", json={"challengeId": challenge_id, "code": code})
    assert_error(answer, 403, "mfa_enrolment_required")


def test_required_passkeys_leave_the_code_to_people_without_one(
    client, mailbox, make, tenant, member, services
):
    kim = make.user("kim@acme.test", tenant)
    lee = make.user("lee@acme.test", tenant)
    device, lees = SoftAuthenticator(), SoftAuthenticator()
    assert register(client, token_for(client, mailbox, member.email), device).status_code == 201
    assert register(client, token_for(client, mailbox, lee.email), lees).status_code == 201
    secret, codes = give_app(services, lee.id)
    make.policy(tenant, require_passkeys=True)

    challenge_id, code = ask_code(client, mailbox, member.email)
    refused = client.post("/api/auth/verify", json={"challengeId": challenge_id, "code": code})
    assert_error(refused, 403, "passkey_required")
    assert passkey_sign_in(client, device).status_code == 201
    # Kim has no passkey yet: the code leads only to adding her first
    # (test_passkey_enrolment.py goes on from here).
    assert_error(api_sign_in(client, mailbox, kim.email), 403, "passkey_enrolment_required")
    # Lee has a passkey and an app: the code leads to a recovery code, never the app's.
    step = api_sign_in(client, mailbox, lee.email)
    assert step.status_code == 401 and step.json["code"] == "mfa_required"
    app_code = pyotp.TOTP(secret).at(services.clock.now())
    with_app = client.post(
        "/api/auth/verify/mfa",
        json={"mfaChallengeId": step.json["mfaChallengeId"], "code": app_code},
    )
    assert_error(with_app, 400, "invalid_code")
    with_recovery = client.post(
        "/api/auth/verify/mfa",
        json={"mfaChallengeId": step.json["mfaChallengeId"], "recoveryCode": codes[0]},
    )
    assert with_recovery.status_code == 201, with_recovery.text


def test_the_policy_api_turns_passkeys_off(client, mailbox, make, tenant, member):
    admin = make.user("ada@acme.test", tenant, role="admin")
    admin_token = token_for(client, mailbox, admin.email)
    device = SoftAuthenticator()
    assert register(client, token_for(client, mailbox, member.email), device).status_code == 201
    changed = client.put(
        "/api/admin/policy", json={"allowPasskeys": False}, headers=bearer(admin_token)
    )
    assert changed.status_code == 200 and changed.json["allowPasskeys"] is False
    assert_error(passkey_sign_in(client, device), 403, "forbidden")


def test_admins_see_how_each_session_was_signed_in(client, mailbox, make, tenant, member):
    device = SoftAuthenticator()
    register(client, token_for(client, mailbox, member.email), device)  # a code sign-in
    assert passkey_sign_in(client, device).status_code == 201
    admin = make.user("ada@acme.test", tenant, role="admin")
    assert login(client, mailbox, admin.email).status_code == 302  # a third, by code
    person = client.get(f"/admin/users/{member.id}")
    assert person.status_code == 200, person.text
    assert person.text.count('class="sign-in-method method-passkey"') == 1
    assert person.text.count('class="sign-in-method method-code"') == 1
    explorer = client.get("/admin/sessions")
    assert (
        explorer.text.count("with passkey") == 1 and explorer.text.count("with emailed code") == 2
    )
    figures = client.get("/admin/figures")
    # one of today's three sign-ins used a passkey
    assert 'id="figure-passkey-share"' in figures.text
    share = figures.text.split('id="figure-passkey-share"')[1]
    assert '<span class="figure-value">33</span>' in share


def test_passkey_challenges_draw_on_the_networks_budget(new_app):
    app = new_app(RATELIMIT_CHECKS_PER_IP="3 per minute")
    client = app.test_client()
    for _ in range(3):
        assert client.post("/api/auth/passkey/options", json={}).status_code == 200
    limited = client.post("/api/auth/passkey/options", json={})
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) > 0


def test_the_sign_in_page_chooses_a_session_to_end_at_the_limit(
    app, client, mailbox, make, tenant, member, db
):
    """deny mode: a passkey sign-in at the limit goes to the choose-a-session page, and
    finishes with the chosen session ended, with no second ceremony."""
    device = SoftAuthenticator()
    token = token_for(client, mailbox, member.email)  # the one session allowed
    assert register(client, token, device).status_code == 201
    (held_id,) = db.scalars(select(UserSession.id).where(UserSession.user_id == member.id))
    db.rollback()
    make.policy(tenant, max_sessions_per_user=1, limit_mode="deny")
    browser = app.test_client()
    page_token = csrf_from(browser.get("/login").text)
    options = browser.post("/api/auth/passkey/options", json={}).json
    answer = browser.post(
        "/login/passkey",
        json={
            "challengeId": options["challengeId"],
            "credential": device.get(options["publicKey"]),
        },
        headers={"X-CSRFToken": page_token, "Accept": "application/json"},
    )
    assert answer.status_code == 409 and answer.json["code"] == "session_limit_reached"
    assert answer.json["choose"] == "/login/passkey/limit"
    assert browser.get_cookie("holdfast_session") is None

    choose = browser.post("/login/passkey/limit", data={"csrf_token": page_token})
    assert choose.status_code == 409
    assert "Your passkey is right." in choose.text and f'value="{held_id}"' in choose.text
    nothing = browser.post("/login/passkey/limit", data={"csrf_token": page_token, "choosing": "1"})
    assert nothing.status_code == 409 and "Choose the session to end." in nothing.text
    done = browser.post(
        "/login/passkey/limit",
        data={"csrf_token": page_token, "choosing": "1", "end_session": held_id},
    )
    assert done.status_code == 302 and done.location == "/devices"
    assert browser.get("/devices").status_code == 200
    ended = db.get_one(UserSession, held_id)
    assert ended.ended_at is not None and ended.end_reason == "revoked_by_user"
    live = db.scalars(
        select(UserSession).where(UserSession.user_id == member.id, UserSession.ended_at.is_(None))
    ).all()
    assert [s.sign_in_method for s in live] == ["passkey"]
    assert (
        db.scalars(select(Event).where(Event.kind == "passkey.used")).one().session_id == live[0].id
    )
    db.rollback()
    # used once: the flow is gone with the sign-in
    again = browser.post("/login/passkey/limit", data={"csrf_token": page_token})
    assert again.status_code in (302, 400)
    assert client.get("/api/auth/session", headers=bearer(token)).status_code == 401
