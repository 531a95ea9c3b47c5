"""Adding a first passkey to finish a sign-in where the tenant requires passkeys
(app.core.passkey_enrolment) through the API, with the software authenticator; the
browser's side is in test_browser_passkeys.py."""

from __future__ import annotations

import pyotp
from sqlalchemy import select

from app.core import mfa
from app.models import Event, MfaChallenge, Passkey, UserSession
from testkit.api import api_sign_in, ask_code, assert_error, bearer, token_for
from testkit.rows import give_app
from testkit.web import ask_link, csrf_from, follow_link, login, second_step
from testkit.webauthn import SoftAuthenticator, passkey_sign_in, register


def enrol(client, step_id: str, device: SoftAuthenticator, **body):
    """Creation options for the step, then the authenticator's answer: the answer."""
    options = client.post("/api/auth/passkey/enrol/options", json={"stepId": step_id})
    assert options.status_code == 200, options.text
    return client.post(
        "/api/auth/passkey/enrol",
        json={
            "stepId": step_id,
            "challengeId": options.json["challengeId"],
            "credential": device.create(options.json["publicKey"]),
            **body,
        },
    )


def live_sessions(db, user_id):
    return list(
        db.scalars(
            select(UserSession).where(
                UserSession.user_id == user_id, UserSession.ended_at.is_(None)
            )
        )
    )


def test_a_code_without_a_passkey_leads_only_to_adding_one(
    client, mailbox, make, tenant, member, db
):
    make.policy(tenant, require_passkeys=True)
    step = api_sign_in(client, mailbox, member.email, deviceName="Sam's phone")
    assert_error(step, 403, "passkey_enrolment_required")
    assert step.json["stepId"].startswith("mfa_") and step.json["expiresAt"].endswith("Z")
    assert "add a passkey" in step.json["error"]
    assert live_sessions(db, member.id) == []  # no session before the passkey
    db.rollback()

    device = SoftAuthenticator()
    options = client.post("/api/auth/passkey/enrol/options", json={"stepId": step.json["stepId"]})
    public_key = options.json["publicKey"]
    assert public_key["authenticatorSelection"]["residentKey"] == "required"
    assert public_key["authenticatorSelection"]["userVerification"] == "required"
    assert public_key["user"]["name"] == member.email and public_key["excludeCredentials"] == []
    done = client.post(
        "/api/auth/passkey/enrol",
        json={
            "stepId": step.json["stepId"],
            "challengeId": options.json["challengeId"],
            "credential": device.create(public_key),
            "name": "Sam's phone",
        },
    )
    assert done.status_code == 201, done.text
    assert done.json["deviceInfo"]["name"] == "Sam's phone"  # the first step's options
    assert client.get("/api/auth/session", headers=bearer(done.json["token"])).json["valid"]
    session = db.get_one(UserSession, done.json["sessionId"])
    assert session.sign_in_method == "passkey_added"
    (passkey,) = db.scalars(select(Passkey).where(Passkey.user_id == member.id))
    assert passkey.name == "Sam's phone" and passkey.created_device_id == session.device_id
    added = db.scalars(select(Event).where(Event.kind == "passkey.added")).one()
    assert added.session_id == session.id and added.details["passkey_id"] == passkey.id
    assert mailbox.newest(member.email, "A passkey was added")
    db.rollback()

    # From now on the code is refused: the passkey signs in.
    challenge_id, code = ask_code(client, mailbox, member.email)
    refused = client.post("/api/auth/verify", json={"challengeId": challenge_id, "code": code})
    assert_error(refused, 403, "passkey_required")
    assert passkey_sign_in(client, device).status_code == 201


def test_a_step_is_used_once_and_expires(client, mailbox, make, tenant, member, clock, db):
    make.policy(tenant, require_passkeys=True)
    step_id = api_sign_in(client, mailbox, member.email).json["stepId"]
    assert enrol(client, step_id, SoftAuthenticator()).status_code == 201
    # used: neither new options nor another passkey
    again = client.post("/api/auth/passkey/enrol/options", json={"stepId": step_id})
    assert_error(again, 400, "invalid_code")
    assert len(db.scalars(select(Passkey)).all()) == 1
    db.rollback()

    kim = make.user("kim@acme.test", tenant)
    step_id = api_sign_in(client, mailbox, kim.email).json["stepId"]
    options = client.post("/api/auth/passkey/enrol/options", json={"stepId": step_id}).json
    clock.advance(seconds=mfa.STEP_LIFETIME.total_seconds() + 1)
    late = client.post(
        "/api/auth/passkey/enrol",
        json={
            "stepId": step_id,
            "challengeId": options["challengeId"],
            "credential": SoftAuthenticator().create(options["publicKey"]),
        },
    )
    assert_error(late, 400, "invalid_code")
    assert "expired" in late.json["error"]
    assert live_sessions(db, kim.id) == []
    db.rollback()
    assert_error(
        client.post("/api/auth/passkey/enrol/options", json={"stepId": "mfa_nope"}),
        400,
        "invalid_code",
    )


def test_a_ceremony_finishes_only_its_own_step(client, mailbox, make, tenant, member, db):
    make.policy(tenant, require_passkeys=True)
    kim = make.user("kim@acme.test", tenant)
    sams = api_sign_in(client, mailbox, member.email).json["stepId"]
    kims = api_sign_in(client, mailbox, kim.email).json["stepId"]
    options = client.post("/api/auth/passkey/enrol/options", json={"stepId": sams}).json
    crossed = client.post(
        "/api/auth/passkey/enrol",
        json={
            "stepId": kims,
            "challengeId": options["challengeId"],
            "credential": SoftAuthenticator().create(options["publicKey"]),
        },
    )
    assert_error(crossed, 400, "invalid_passkey")
    assert db.scalars(select(Passkey)).all() == []
    db.rollback()
    # Kim's step is still open for her own ceremony.
    assert enrol(client, kims, SoftAuthenticator()).status_code == 201


def test_a_person_with_an_app_answers_it_then_adds_a_passkey(
    client, mailbox, make, tenant, member, services, db
):
    secret, _codes = give_app(services, member.id)
    make.policy(tenant, require_passkeys=True)
    first = api_sign_in(client, mailbox, member.email)
    assert first.status_code == 401 and first.json["methods"] == ["totp", "recovery_code"]
    second = client.post(
        "/api/auth/verify/mfa",
        json={
            "mfaChallengeId": first.json["mfaChallengeId"],
            "code": pyotp.TOTP(secret).at(services.clock.now()),
        },
    )
    assert_error(second, 403, "passkey_enrolment_required")
    assert live_sessions(db, member.id) == []
    db.rollback()
    assert enrol(client, second.json["stepId"], SoftAuthenticator()).status_code == 201


def test_a_person_with_a_passkey_is_still_refused_the_code(client, mailbox, make, tenant, member):
    device = SoftAuthenticator()
    assert register(client, token_for(client, mailbox, member.email), device).status_code == 201
    make.policy(tenant, require_passkeys=True)
    assert_error(api_sign_in(client, mailbox, member.email), 403, "passkey_required")


def test_the_recovery_only_step_lists_only_recovery_codes(
    client, mailbox, make, tenant, member, services
):
    device = SoftAuthenticator()
    assert register(client, token_for(client, mailbox, member.email), device).status_code == 201
    _secret, codes = give_app(services, member.id)
    make.policy(tenant, require_passkeys=True)
    step = api_sign_in(client, mailbox, member.email)
    assert step.status_code == 401 and step.json["methods"] == ["recovery_code"]
    assert "recovery codes" in step.json["error"] and "authenticator app" not in step.json["error"]
    done = client.post(
        "/api/auth/verify/mfa",
        json={"mfaChallengeId": step.json["mfaChallengeId"], "recoveryCode": codes[0]},
    )
    assert done.status_code == 201, done.text


def test_without_the_policy_a_code_signs_in_as_before(client, mailbox, member, db):
    answer = api_sign_in(client, mailbox, member.email)
    assert answer.status_code == 201
    assert db.scalars(select(MfaChallenge)).all() == []


def test_rename_a_passkey_through_the_api(client, mailbox, make, tenant, member):
    token = token_for(client, mailbox, member.email)
    added = register(client, token, SoftAuthenticator()).json
    renamed = client.patch(
        f"/api/account/passkeys/{added['id']}",
        json={"name": "  Work   laptop "},
        headers=bearer(token),
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json["name"] == "Work laptop" and renamed.json["id"] == added["id"]
    listed = client.get("/api/account/passkeys", headers=bearer(token)).json["passkeys"]
    assert [p["name"] for p in listed] == ["Work laptop"]
    for bad in ("   ", "x" * 101, 3):
        answer = client.patch(
            f"/api/account/passkeys/{added['id']}", json={"name": bad}, headers=bearer(token)
        )
        assert_error(answer, 422, "validation_error")
        assert answer.json["field"] == "name"
    # another person's, or another tenant's, passkey is not found
    kim = make.user("kim@acme.test", tenant)
    other = make.tenant("globex")
    lee = make.user("lee@globex.test", other)
    for email in (kim.email, lee.email):
        theirs = token_for(client, mailbox, email)
        answer = client.patch(
            f"/api/account/passkeys/{added['id']}", json={"name": "Mine"}, headers=bearer(theirs)
        )
        assert_error(answer, 404, "not_found")
    assert (
        client.get("/api/account/passkeys", headers=bearer(token)).json["passkeys"][0]["name"]
        == "Work laptop"
    )


# --- the pages (the browser's side: test_browser_passkeys.py) ------------------------------


def page_json(client, url, body, token):
    return client.post(url, json=body, headers={"X-CSRFToken": token, "Accept": "application/json"})


def test_the_web_code_leads_to_the_passkey_page_and_it_signs_in(
    client, mailbox, make, tenant, member, db
):
    make.policy(tenant, require_passkeys=True)
    answer = login(client, mailbox, member.email)
    assert answer.status_code == 302 and answer.location.endswith("/login/passkey/add")
    assert client.get_cookie("holdfast_session") is None
    page = client.get("/login/passkey/add")
    assert page.status_code == 200 and "Add a passkey to finish signing in" in page.text
    # the code page (and the link) only lead back here: the code is used up
    assert client.get("/login/code").location.endswith("/login/passkey/add")
    token = csrf_from(page.text)
    options = page_json(client, "/login/passkey/add/options", {}, token)
    assert options.status_code == 200, options.text
    device = SoftAuthenticator()
    done = page_json(
        client,
        "/login/passkey/add",
        {
            "challengeId": options.json["challengeId"],
            "credential": device.create(options.json["publicKey"]),
        },
        token,
    )
    assert done.status_code == 200, done.text
    assert done.json == {"redirect": "/devices"}
    assert client.get_cookie("holdfast_session") is not None
    assert client.get("/devices").status_code == 200
    (session,) = live_sessions(db, member.id)
    assert session.sign_in_method == "passkey_added"
    db.rollback()
    # the step is over: the page sends this browser back to the sign-in page
    assert client.get("/login/passkey/add").location.endswith("/login")


def test_the_passkey_page_routes_need_the_step_and_the_csrf_token(
    client, mailbox, make, tenant, member
):
    page = client.get("/login")
    token = csrf_from(page.text)
    no_step = page_json(client, "/login/passkey/add/options", {}, token)
    assert no_step.status_code == 400 and no_step.json["code"] == "invalid_code"
    assert client.get("/login/passkey/add").location.endswith("/login")
    make.policy(tenant, require_passkeys=True)
    login(client, mailbox, member.email)
    refused = client.post(
        "/login/passkey/add/options", json={}, headers={"Accept": "application/json"}
    )
    assert refused.status_code == 400 and refused.json["code"] == "csrf_failed"


def test_the_app_step_and_the_link_lead_to_the_passkey_page(
    client, mailbox, make, tenant, member, services
):
    secret, _codes = give_app(services, member.id)
    make.policy(tenant, require_passkeys=True)
    assert login(client, mailbox, member.email).location.endswith("/login/mfa")
    app_code = pyotp.TOTP(secret).at(services.clock.now())
    answer = second_step(client, app_code)
    assert answer.status_code == 302 and answer.location.endswith("/login/passkey/add")
    assert client.get_cookie("holdfast_session") is None

    kim = make.user("kim@acme.test", tenant)
    other = client.application.test_client()
    link = ask_link(other, mailbox, kim.email)
    followed = follow_link(other, link)
    assert followed.status_code == 302 and followed.location.endswith("/login/passkey/add")


def test_the_recovery_only_page_says_only_a_recovery_code_works(
    client, mailbox, make, tenant, member, services
):
    device = SoftAuthenticator()
    assert register(client, token_for(client, mailbox, member.email), device).status_code == 201
    give_app(services, member.id)
    login(client, mailbox, member.email)
    assert 'id="recovery-only"' not in client.get("/login/mfa").text  # no policy yet
    client.post("/login/cancel", data={"csrf_token": csrf_from(client.get("/login/mfa").text)})
    make.policy(tenant, require_passkeys=True)
    assert login(client, mailbox, member.email).location.endswith("/login/mfa")
    page = client.get("/login/mfa")
    assert 'id="recovery-only"' in page.text
    assert "only one of your recovery codes is accepted" in page.text


GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}


def test_the_passkey_pages_and_messages_speak_german(client, mailbox, make, tenant, member):
    """The passkey step, its script's words, the page routes' errors (the core's
    messages) and the security card, in the browser's language."""
    make.policy(tenant, require_passkeys=True)
    login(client, mailbox, member.email)
    page = client.get("/login/passkey/add", headers=GERMAN).text
    assert "<h1>Passkey hinzufügen, um die Anmeldung abzuschließen</h1>" in page
    assert 'data-words-cancelled="Es wurde kein Passkey hinzugefügt.' in page
    assert f"<strong>{member.email}</strong> hat noch keinen" in page
    assert ">Abbrechen</button>" in page
    token = csrf_from(page)
    stale = page_json(
        client,
        "/login/passkey/add",
        {"challengeId": "pkc_nope", "credential": {}},
        token,
    )
    assert stale.status_code == 400, stale.text
    english = client.post(
        "/login/passkey/add",
        json={"challengeId": "pkc_nope", "credential": {}},
        headers={"X-CSRFToken": token, "Accept": "application/json"},
    )
    assert english.json["error"] == "That passkey request has ended or was used already. Try again."
    german = client.post(
        "/login/passkey/add",
        json={"challengeId": "pkc_nope", "credential": {}},
        headers={"X-CSRFToken": token, "Accept": "application/json", **GERMAN},
    )
    assert german.json["error"] == (
        "Diese Passkey-Anfrage ist abgelaufen oder wurde bereits verwendet. "
        "Versuchen Sie es erneut."
    )
    step = client.get("/login/passkey/add").text
    options = page_json(client, "/login/passkey/add/options", {}, csrf_from(step)).json
    done = page_json(
        client,
        "/login/passkey/add",
        {
            "challengeId": options["challengeId"],
            "credential": SoftAuthenticator().create(options["publicKey"]),
        },
        csrf_from(step),
    )
    assert done.status_code == 200, done.text
    card = client.get("/account/security", headers=GERMAN).text
    assert "<h2>Passkeys</h2>" in card and "noch nicht verwendet" in card
    assert "Umbenennen oder entfernen" in card and ">Passkey entfernen</button>" in card
    assert 'data-words-failed="Dieser Passkey konnte nicht hinzugefügt werden."' in card


def test_an_admin_who_must_have_an_app_or_a_passkey_adds_the_passkey(client, mailbox, make, tenant):
    """Both rules at once: the first passkey meets the admins' rule too, so the admin
    adds that (not an app) and goes straight to the admin API."""
    admin = make.user("ada@acme.test", tenant, role="admin")
    make.policy(tenant, require_totp_for_admins=True, require_passkeys=True)
    step = api_sign_in(client, mailbox, admin.email)
    assert_error(step, 403, "passkey_enrolment_required")
    done = enrol(client, step.json["stepId"], SoftAuthenticator())
    assert done.status_code == 201, done.text
    policy = client.get("/api/admin/policy", headers=bearer(done.json["token"]))
    assert policy.status_code == 200 and policy.json["requirePasskeys"] is True
