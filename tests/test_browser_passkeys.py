"""Passkeys in Chromium (issue 24): real WebAuthn ceremonies with the browser's virtual
authenticator (the DevTools protocol's WebAuthn domain). The server listens on 127.0.0.1
and is reached as http://localhost:PORT, HOLDFAST_BASE_URL to match: WebAuthn refuses an
IP address as relying-party id."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app
from app.models import Alert, Event, Passkey, Tenant, User, UserSession
from app.services import Services
from testkit.browser import browser_login, enter_emailed_code, wait_until
from testkit.cluster import free_port
from testkit.mail import sending
from testkit.rows import Factory

pytestmark = pytest.mark.browser


@pytest.fixture
def localhost_app(app_config: dict[str, Any], tmp_path) -> Iterator[tuple[Flask, str]]:
    """The app on the real clock, served on 127.0.0.1 and named http://localhost:PORT."""
    from werkzeug.serving import make_server

    port = free_port()
    base = f"http://localhost:{port}"
    application = create_app(
        {**app_config, "CLOCK": None, "BASE_URL": base}, instance_path=tmp_path
    )
    with sending(application):
        server = make_server("127.0.0.1", port, application, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield application, base
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def site(localhost_app):
    return localhost_app[1]


@pytest.fixture
def people(localhost_app) -> Factory:
    from app.clock import SystemClock

    return Factory(localhost_app[0].extensions["holdfast"], SystemClock())  # type: ignore[arg-type]


@pytest.fixture
def app_services(localhost_app) -> Services:
    return localhost_app[0].extensions["holdfast"]  # type: ignore[no-any-return]


@pytest.fixture
def acme(people) -> Tenant:
    return people.tenant("acme")


@pytest.fixture
def sam(people, acme) -> User:
    """A member of the tenant acme."""
    return people.user("sam@acme.test", acme)


@pytest.fixture
def sams_passkey(page, site, mailbox, sam) -> tuple[Any, str]:
    """Sam signed in with a code in ``page``, with a passkey added on the security page
    from a virtual authenticator: (the CDP session, the authenticator's id)."""
    made = authenticator(page)
    browser_login(page, site, mailbox, sam.email)
    add_passkey(page, site)
    return made


def authenticator(page, *, autofill: bool = False) -> tuple[Any, str]:
    """A virtual platform authenticator with user verification, attached to the page's
    browser: (the CDP session, its id). Chromium's virtual authenticator answers an
    autofill (conditional) request at once, by itself; unless ``autofill``, the page
    is made a browser without autofill for passkeys, so the button is what signs in."""
    if not autofill:
        page.add_init_script(
            "Object.defineProperty(PublicKeyCredential, 'isConditionalMediationAvailable',"
            " {value: undefined})"
        )
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    made = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    return cdp, made["authenticatorId"]


#: a platform authenticator holding discoverable credentials, verifying its user
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


def add_passkey(page, site: str) -> None:
    """On the security page: Add a passkey, and wait until it is listed."""
    page.goto(f"{site}/account/security")
    wait_until(page, "document.body.dataset.passkeys === 'ready'")
    page.click("#add-passkey")
    page.wait_for_selector("li.passkey")


def sign_out(page) -> None:
    page.click("header form button[type=submit]")
    page.wait_for_url("**/login?reason=logout")


def passkey_sign_in(page, site: str) -> None:
    page.goto(f"{site}/login")
    wait_until(page, "document.body.dataset.passkeys === 'ready'")
    page.click("#passkey-sign-in")


def rows(services, model, *where):
    with services.session() as db:
        return list(db.scalars(select(model).where(*where).execution_options(all_tenants=True)))


def test_add_a_passkey_and_sign_in_with_it_without_an_email(
    app_services, site, sam, sams_passkey, mailbox, page
):
    services = app_services
    listed = page.inner_text("#passkeys")
    assert "Chrome on Linux" in listed or "Chromium on Linux" in listed or "on Linux" in listed
    assert "not used yet" in listed
    (stored,) = rows(services, Passkey, Passkey.user_id == sam.id)
    assert stored.public_key and stored.credential_id
    assert mailbox.newest(sam.email, "A passkey was added")
    assert rows(services, Event, Event.kind == "passkey.added", Event.subject_id == sam.id)

    sign_out(page)
    mails_before = mailbox.count(sam.email)
    passkey_sign_in(page, site)
    page.wait_for_url("**/devices")
    assert mailbox.count(sam.email) == mails_before  # no code was sent
    sessions = rows(services, UserSession, UserSession.user_id == sam.id)
    newest = max(sessions, key=lambda s: s.created_at)
    assert newest.sign_in_method == "passkey" and newest.ended_at is None
    assert {s.sign_in_method for s in sessions} == {"code", "passkey"}
    (used,) = rows(services, Passkey, Passkey.user_id == sam.id)
    assert used.last_used_at is not None and used.sign_count >= 1
    page.goto(f"{site}/account/security")
    assert "last used" in page.inner_text("#passkeys")


def test_a_removed_passkey_signs_in_nowhere(app_services, site, sam, sams_passkey, mailbox, page):
    services = app_services

    page.click("#passkeys details summary")
    page.click(".remove-passkey")
    page.wait_for_selector("text=removed. It no longer signs you in")
    assert rows(services, Passkey, Passkey.user_id == sam.id) == []
    assert mailbox.newest(sam.email, "A passkey was removed")

    sign_out(page)
    passkey_sign_in(page, site)  # the authenticator still holds the credential
    page.wait_for_selector("#passkey-error:not([hidden])")
    assert "not (or no longer) on any account" in page.inner_text("#passkey-error")
    assert page.url.endswith("/login")
    assert not [
        s for s in rows(services, UserSession, UserSession.user_id == sam.id) if s.ended_at is None
    ]


def test_a_cloned_authenticator_is_refused_and_alerted(
    app_services, site, people, acme, sam, sams_passkey, mailbox, page
):
    """The credential, private key and counter copied to a second authenticator: the
    original is used (its counter moves on), then the copy answers with the old counter."""
    services = app_services
    people.user("boss@acme.test", acme, role="admin")
    cdp, original = sams_passkey
    (copied,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": original})["credentials"]

    sign_out(page)
    passkey_sign_in(page, site)  # the original, counting on
    page.wait_for_url("**/devices")
    sign_out(page)

    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": original})
    clone = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})[
        "authenticatorId"
    ]
    cdp.send("WebAuthn.addCredential", {"authenticatorId": clone, "credential": copied})

    passkey_sign_in(page, site)
    page.wait_for_selector("#passkey-error:not([hidden])")
    assert "looks copied" in page.inner_text("#passkey-error")
    (alert,) = rows(services, Alert, Alert.kind == "passkey_cloned")
    assert alert.severity == "high" and alert.user_id == sam.id
    assert rows(services, Event, Event.kind == "passkey.cloned", Event.subject_id == sam.id)
    assert mailbox.newest("boss@acme.test", "Copied passkey used")
    live = [s for s in rows(services, UserSession, UserSession.user_id == sam.id) if not s.ended_at]
    assert live == []


def test_a_replayed_challenge_is_refused(app_services, site, sam, sams_passkey, page):
    """The same signed answer posted twice: the second finds its challenge used."""
    services = app_services
    sign_out(page)
    page.goto(f"{site}/no-such-page")  # this origin, without the sign-in page's script
    answers = page.evaluate(
        """async () => {
          const post = (url, body) => fetch(url, {method: "POST",
              headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
            .then(async r => [r.status, await r.json()]);
          const [, options] = await post("/api/auth/passkey/options", {});
          const credential = await navigator.credentials.get({
            publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey)});
          const body = {challengeId: options.challengeId, credential: credential.toJSON()};
          return [await post("/api/auth/passkey/verify", body),
                  await post("/api/auth/passkey/verify", body)];
        }"""
    )
    (first_status, first), (second_status, second) = answers
    assert first_status == 201 and first["sessionId"].startswith("sess_")
    assert second_status == 400 and second["code"] == "invalid_passkey"
    assert "used already" in second["error"]
    live = [s for s in rows(services, UserSession, UserSession.user_id == sam.id) if not s.ended_at]
    assert [s.id for s in live if s.sign_in_method == "passkey"] == [first["sessionId"]]


def test_a_passkey_of_another_tenant_is_refused(
    app_services, site, people, sam, sams_passkey, page
):
    """A sign-in limited to one tenant refuses an account's passkey from another."""
    services = app_services
    people.tenant("globex")
    sign_out(page)
    page.goto(f"{site}/no-such-page")  # this origin, without the sign-in page's script
    answers = page.evaluate(
        """async () => {
          const post = (url, body) => fetch(url, {method: "POST",
              headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
            .then(async r => [r.status, await r.json()]);
          const results = [];
          for (const tenant of ["globex", "acme"]) {
            const [, options] = await post("/api/auth/passkey/options", {tenant});
            const credential = await navigator.credentials.get({
              publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey)});
            results.push(await post("/api/auth/passkey/verify",
              {challengeId: options.challengeId, credential: credential.toJSON()}));
          }
          return results;
        }"""
    )
    (other_status, other), (own_status, own) = answers
    assert other_status == 400 and other["code"] == "invalid_passkey"
    assert "another organisation" in other["error"]
    assert own_status == 201  # the same passkey in its own tenant
    live = [s for s in rows(services, UserSession, UserSession.user_id == sam.id) if not s.ended_at]
    assert [s.id for s in live if s.sign_in_method == "passkey"] == [own["sessionId"]]


def test_the_email_fields_autofill_signs_in_with_a_passkey(app_services, site, sam, mailbox, page):
    """Conditional mediation: the sign-in page asks for passkeys in the email field's
    autofill as it loads; Chromium's virtual authenticator picks the passkey at once,
    as a person choosing it from the autofill list would."""
    services = app_services
    authenticator(page, autofill=True)
    # (read before there is a passkey: with one, the page may sign in before it is read)
    page.goto(f"{site}/login")
    assert page.get_attribute("#email", "autocomplete") == "username webauthn"
    browser_login(page, site, mailbox, sam.email)
    add_passkey(page, site)
    sign_out(page)
    page.wait_for_url("**/devices")  # nothing clicked, nothing typed
    newest = max(
        rows(services, UserSession, UserSession.user_id == sam.id), key=lambda s: s.created_at
    )
    assert newest.sign_in_method == "passkey"


def test_a_passkey_is_a_fresh_sign_in(app_services, site, sam, sams_passkey, mailbox, page):
    """Removing a passkey needs a recent sign-in: a passkey gives it, with no code."""
    services = app_services
    with services.session(write=True) as db:
        (session,) = [
            s for s in db.scalars(select(UserSession).where(UserSession.user_id == sam.id))
        ]
        session.authenticated_at -= timedelta(minutes=20)
        db.commit()
    mails = mailbox.count(sam.email)
    page.goto(f"{site}/account/security")
    page.click("#passkeys details summary")
    page.click(".remove-passkey")
    page.wait_for_url("**/login/again**")
    wait_until(page, "document.body.dataset.passkeys === 'ready'")
    page.click("#passkey-again")
    page.wait_for_url(lambda url: url.startswith(f"{site}/account/security"))
    with services.session() as db:
        fresh = db.get_one(UserSession, session.id)
        assert datetime.now(UTC) - fresh.authenticated_at < timedelta(minutes=1)
    assert rows(
        services, Event, Event.kind == "session.reauthenticated", Event.session_id == session.id
    )
    page.click("#passkeys details summary")
    page.click(".remove-passkey")
    page.wait_for_selector("text=removed. It no longer signs you in")
    assert rows(services, Passkey, Passkey.user_id == sam.id) == []
    assert mailbox.count(sam.email) == mails + 1  # the removal notice; no code was sent


SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))


def test_sign_in_and_security_pages_at_desktop_and_phone_widths(site, sam, mailbox, browser):
    """The passkey parts of both pages fit a phone (no sideways scrolling) and a desktop;
    screenshots go to HOLDFAST_SCREENSHOTS (docs/screenshots/ holds the committed ones)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height, suffix in ((1280, 900, ""), (390, 844, "-phone")):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        authenticator(page)
        page.goto(f"{site}/login")
        wait_until(page, "document.body.dataset.passkeys === 'ready'")
        assert page.is_visible("#passkey-sign-in")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(SHOTS / f"sign-in-passkey{suffix}.png"), full_page=True)
        browser_login(page, site, mailbox, sam.email)
        if not suffix:
            add_passkey(page, site)
        page.goto(f"{site}/account/security")
        page.click("#passkeys details summary")
        name_field = page.locator("#passkeys .passkey-rename input[name=name]")
        name_field.wait_for(state="visible", timeout=5000)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(SHOTS / f"security-passkeys{suffix}.png"), full_page=True)
        page.wait_for_load_state("networkidle")
        context.close()


# --- require_passkeys: the code leads only to adding a first passkey ----------------------


def code_to_passkey_step(page, site, mailbox, email) -> None:
    """The emailed code, in a tenant that requires passkeys, for a person with none: the
    page that asks for a passkey."""
    enter_emailed_code(page, site, mailbox, email)
    page.wait_for_url("**/login/passkey/add")


def test_a_code_without_a_passkey_leads_to_adding_one_then_signs_in(
    app_services, site, people, acme, sam, mailbox, page
):
    people.policy(acme, require_passkeys=True)
    authenticator(page)
    code_to_passkey_step(page, site, mailbox, sam.email)
    assert "Add a passkey to finish signing in" in page.inner_text("h1")
    assert rows(app_services, UserSession, UserSession.user_id == sam.id) == []
    wait_until(page, "document.body.dataset.passkeys === 'ready'")
    page.click("#enrol-passkey")
    page.wait_for_url("**/devices")
    assert "Passkey added, and you are signed in" in page.inner_text("body")
    (session,) = rows(app_services, UserSession, UserSession.user_id == sam.id)
    assert session.sign_in_method == "passkey_added" and session.ended_at is None
    (stored,) = rows(app_services, Passkey, Passkey.user_id == sam.id)
    assert stored.created_device_id == session.device_id
    assert mailbox.newest(sam.email, "A passkey was added")
    (added,) = rows(app_services, Event, Event.kind == "passkey.added")
    assert added.session_id == session.id

    # The next sign-in is with that passkey, and no code is sent.
    sign_out(page)
    mails = mailbox.count(sam.email)
    passkey_sign_in(page, site)
    page.wait_for_url("**/devices")
    assert mailbox.count(sam.email) == mails


def test_leaving_the_passkey_step_signs_nobody_in(
    app_services, site, people, acme, sam, mailbox, page
):
    people.policy(acme, require_passkeys=True)
    authenticator(page)
    code_to_passkey_step(page, site, mailbox, sam.email)
    page.goto(f"{site}/devices")
    page.wait_for_url("**/login**")  # no session
    page.goto(f"{site}/login/code")  # the code was used up: only the passkey step is left
    page.wait_for_url("**/login/passkey/add")
    page.click("#cancel-sign-in")
    page.wait_for_url("**/login")
    page.goto(f"{site}/login/passkey/add")
    page.wait_for_url("**/login")  # cancelled: the step is gone from this browser
    assert rows(app_services, UserSession, UserSession.user_id == sam.id) == []
    assert rows(app_services, Passkey, Passkey.user_id == sam.id) == []


def test_the_passkey_step_at_desktop_and_phone_widths(site, people, acme, sam, mailbox, browser):
    people.policy(acme, require_passkeys=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height, suffix in ((1280, 900, ""), (390, 844, "-phone")):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        authenticator(page)
        code_to_passkey_step(page, site, mailbox, sam.email)
        wait_until(page, "document.body.dataset.passkeys === 'ready'")
        assert page.is_visible("#enrol-passkey") and page.is_visible("#cancel-sign-in")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(SHOTS / f"sign-in-add-passkey{suffix}.png"), full_page=True)
        context.close()


def test_at_the_session_limit_a_passkey_sign_in_chooses_a_session_to_end(
    app_services, site, people, acme, sam, sams_passkey, page
):
    """deny mode: the page asks which session to end, as after a code, and no second
    ceremony is needed."""
    (held,) = rows(app_services, UserSession, UserSession.user_id == sam.id)
    people.policy(acme, max_sessions_per_user=1, limit_mode="deny")
    page.context.clear_cookies()  # this browser forgets its session; the session lives on
    passkey_sign_in(page, site)
    page.wait_for_url("**/login/passkey/limit")
    assert "Your passkey is right." in page.inner_text("body")
    page.check(f"#end-{held.id}")
    page.click("#end-and-continue")
    page.wait_for_url("**/devices")
    sessions = {s.id: s for s in rows(app_services, UserSession, UserSession.user_id == sam.id)}
    assert sessions[held.id].ended_at is not None
    live = [s for s in sessions.values() if s.ended_at is None]
    assert [s.sign_in_method for s in live] == ["passkey"]
