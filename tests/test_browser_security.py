"""Whole journeys in Chromium: "This wasn't me" followed from the email the SMTP test server
received, the admin acknowledging the alert live, and the security pages (screenshots)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import create_app
from app.clock import SystemClock
from app.mail import plain_text
from testkit.browser import browser_login
from testkit.cluster import free_port
from testkit.mail import sending
from testkit.rows import Factory
from testkit.values import UA_IPAD, UA_MAC_CHROME

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))


@pytest.fixture
def site(app_config, tmp_path) -> Iterator[tuple[str, Factory]]:
    """The app on the real clock, served where its BASE_URL says, so links in mail work."""
    from werkzeug.serving import make_server

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    application = create_app(
        {**app_config, "CLOCK": None, "BASE_URL": base}, instance_path=tmp_path / "site"
    )
    server = make_server("127.0.0.1", port, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with sending(application):
        yield base, Factory(application.extensions["holdfast"], SystemClock())  # type: ignore[arg-type]
        server.shutdown()
        thread.join(timeout=5)


def new_sign_in_mail(mailbox, address: str) -> str:
    return plain_text(mailbox.newest(address, "New sign-in"))


def test_this_wasnt_me_from_the_email_signs_the_stranger_out(browser, site, mailbox):
    base, make = site
    tenant = make.tenant("clinic")
    make.user("sarah@clinic.test", tenant)
    make.user("ada@clinic.test", tenant, role="admin")

    desk = browser.new_context(user_agent=UA_MAC_CHROME, viewport={"width": 1200, "height": 800})
    stranger = browser.new_context(user_agent=UA_IPAD, viewport={"width": 820, "height": 1180})
    mine, theirs = desk.new_page(), stranger.new_page()
    browser_login(mine, base, mailbox, "sarah@clinic.test")
    browser_login(theirs, base, mailbox, "sarah@clinic.test")  # a device never seen before

    text = new_sign_in_mail(mailbox, "sarah@clinic.test")
    assert "What:  Safari on iOS (tablet)" in text
    link = re.search(rf"{re.escape(base)}/account/not-me/\S+", text).group(0)

    # The person opens the link from their mail: a confirm page first, nothing done yet.
    reader = browser.new_context(user_agent=UA_MAC_CHROME).new_page()
    reader.goto(link)
    assert "Wasn't you?" in reader.locator("h1").inner_text()
    assert "Safari on iOS" in reader.locator("dl.facts").inner_text()
    theirs.goto(f"{base}/devices")
    assert theirs.url.endswith("/devices")  # still signed in until the person confirms

    reader.click("#not-me-confirm")
    reader.wait_for_selector("#not-me-done")
    assert (
        "We signed out the session on Safari on iOS" in reader.locator("#not-me-done").inner_text()
    )
    reader.click("#sign-in-again")
    reader.wait_for_url("**/login?next=**")
    assert reader.locator("#email").is_visible()

    # The stranger's next page is the sign-in page, with the reason.
    theirs.goto(f"{base}/devices")
    theirs.wait_for_url("**/login**")
    assert "You were signed out to protect your account." in theirs.content()

    # The link worked once.
    reader.goto(link)
    assert "used already" in reader.locator("#not-me-problem").inner_text()

    # Admins got the high alert by email, and see it on /admin/alerts.
    admin_mail = mailbox.newest("ada@clinic.test", "High alert")
    assert f"{base}/admin/alerts" in plain_text(admin_mail)
    console = browser.new_context(user_agent=UA_MAC_CHROME, viewport={"width": 1280, "height": 800})
    admin_page = console.new_page()
    browser_login(admin_page, base, mailbox, "ada@clinic.test")
    admin_page.goto(f"{base}/admin/alerts")
    rows = admin_page.locator("tr.alert-row")
    assert rows.count() == 2  # the new device (low) and the report (high)
    high = admin_page.locator("tr.alert-row.severity-high")
    assert "Person reported a sign-in that was not them" in high.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    admin_page.screenshot(path=str(SHOTS / "admin-alerts.png"), full_page=True)

    # Acknowledge with htmx: the row changes in place, the page does not reload.
    admin_page.evaluate("window.__sameDocument = true")
    high.get_by_role("button", name="Acknowledge").click()
    admin_page.locator("tr.alert-row.severity-high.status-acknowledged").wait_for()
    assert admin_page.evaluate("window.__sameDocument") is True
    assert high.get_by_role("button", name="Acknowledge").count() == 0

    # The person's security page lists what happened; adding an app shows a QR code.
    mine.goto(f"{base}/account/security")
    assert "Person reported a sign-in that was not them" in mine.locator("#my-alerts").inner_text()
    mine.screenshot(path=str(SHOTS / "account-security.png"), full_page=True)
    mine.click("#add-totp")
    mine.wait_for_selector("figure.qr svg")
    assert re.fullmatch(r"[A-Z2-7 ]{39}", mine.locator("#totp-secret").inner_text())
    mine.screenshot(path=str(SHOTS / "account-security-enrol.png"), full_page=True)
    for context in (desk, stranger, reader.context, console):
        context.close()
