"""Two-step sign-in in Chromium (issue 21, finding 3): sign-in and fresh sign-in with the
emailed code and then the authenticator app's code, or a recovery code instead; and an
admin whose tenant requires an app adding one right after the emailed code. The app's
codes come from pyotp on the real clock, as a phone would show them."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import update

from app.mail import plain_text
from app.models import UserSession
from testkit.browser import enter_emailed_code
from testkit.rows import give_app
from testkit.values import UA_MAC_CHROME

pytestmark = pytest.mark.browser


def app_code(secret, *, ahead=0):
    """The app's code now (``ahead`` steps of a fast phone's clock later)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * ahead)


def close(*pages):
    """Let each page's requests finish, then close its browser: a request still running
    on the server when the test ends would hold a database connection past the app's
    teardown."""
    for page in pages:
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")
        page.context.close()


def age_sign_in(live_app, user_id):
    """Arrange a stale sign-in (20 minutes old): admin pages then ask for a fresh one."""
    services = live_app.extensions["holdfast"]
    with services.session(write=True) as db:
        db.execute(
            update(UserSession)
            .where(UserSession.user_id == user_id)
            .values(authenticated_at=services.clock.now() - timedelta(minutes=20))
        )
        db.commit()


def test_sign_in_with_the_app_code_then_with_a_recovery_code(
    browser, live_server, live_make, live_app, mailbox
):
    tenant = live_make.tenant("clinic")
    sarah = live_make.user("sarah@clinic.test", tenant)
    secret, codes = give_app(live_app.extensions["holdfast"], sarah.id)

    phone = browser.new_context(user_agent=UA_MAC_CHROME).new_page()
    enter_emailed_code(phone, live_server, mailbox, sarah.email)
    phone.wait_for_url("**/login/mfa")
    assert "One more step" in phone.locator("h1").inner_text()
    assert not any(c["name"] == "holdfast_session" for c in phone.context.cookies())
    phone.fill("#code", "000000")
    phone.click("#verify-second-factor")
    assert "That code is not right" in phone.locator("#code-error").inner_text()
    phone.fill("#code", app_code(secret))
    phone.click("#verify-second-factor")
    phone.wait_for_url("**/devices")
    assert phone.locator("article.device.current").count() == 1

    laptop = browser.new_context(user_agent=UA_MAC_CHROME).new_page()
    enter_emailed_code(laptop, live_server, mailbox, sarah.email)
    laptop.wait_for_url("**/login/mfa")
    laptop.fill("#code", codes[4])
    laptop.click("#verify-second-factor")
    laptop.wait_for_url("**/devices")
    assert "Signed in with a recovery code" in laptop.content()
    mail = [m for m in mailbox.wait_for(sarah.email, 3) if "recovery code" in m["Subject"].lower()]
    assert mail and "9 unused recovery codes left" in plain_text(mail[0])
    laptop.goto(f"{live_server}/account/security")
    assert laptop.locator("#codes-left").inner_text() == "9 left"
    close(phone, laptop)


def test_fresh_sign_in_with_the_app_code_then_with_a_recovery_code(
    browser, live_server, live_make, live_app, mailbox
):
    tenant = live_make.tenant("clinic")
    ada = live_make.user("ada@clinic.test", tenant, role="admin")
    secret, codes = give_app(live_app.extensions["holdfast"], ada.id)
    page = browser.new_context(user_agent=UA_MAC_CHROME).new_page()
    enter_emailed_code(page, live_server, mailbox, ada.email)
    page.wait_for_url("**/login/mfa")
    page.fill("#code", app_code(secret))
    page.click("#verify-second-factor")
    page.wait_for_url("**/devices")
    page.goto(f"{live_server}/admin")
    assert page.url.endswith("/admin")
    page.wait_for_load_state("networkidle")

    for answer in (app_code(secret, ahead=1), codes[0]):  # that step's code was used
        # Off the admin page first: its charts, still loading, would meet the stale sign-in
        # and send the page to /login/again on their own, under the navigation below.
        page.goto(f"{live_server}/account/security")
        page.wait_for_load_state("networkidle")
        age_sign_in(live_app, ada.id)
        before = mailbox.count(ada.email)
        page.goto(f"{live_server}/admin")
        page.wait_for_url("**/login/again**")
        page.click("button[type=submit]:has-text('Email me a code')")
        page.wait_for_selector("#code")
        page.fill("#code", mailbox.last_code(ada.email, before + 1))
        page.click("form button[type=submit]:has-text('Continue')")
        page.wait_for_url("**/login/again/mfa")
        assert "Your emailed code is right" in page.content()
        page.goto(f"{live_server}/admin")  # not fresh yet: the second step is still due
        page.wait_for_url("**/login/again/mfa")
        page.fill("#code", answer)
        page.click("#verify-second-factor")
        page.wait_for_url(re.compile(r".*/admin$"))
        page.wait_for_load_state("networkidle")
    close(page)


def test_an_admin_adds_the_required_app_right_after_the_emailed_code(
    browser, live_server, live_make, mailbox
):
    tenant = live_make.tenant("clinic", require_totp_for_admins=True)
    ada = live_make.user("ada@clinic.test", tenant, role="admin")
    page = browser.new_context(user_agent=UA_MAC_CHROME).new_page()
    enter_emailed_code(page, live_server, mailbox, ada.email, path="/login?next=/admin")
    page.wait_for_url("**/login/enrol")
    page.goto(f"{live_server}/devices")  # nothing else is reachable: there is no session
    page.wait_for_url("**/login**")
    page.goto(f"{live_server}/login/enrol")
    page.click("#add-totp")
    page.wait_for_selector("figure.qr svg")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.fill("#code", app_code(secret))
    page.click("#confirm-totp")
    page.wait_for_selector("#recovery-code-list")
    assert page.locator("code.recovery-code").count() == 10
    page.click("#recovery-codes-done")
    page.wait_for_url(re.compile(r".*/admin$"))
    close(page)
