"""Session policy in Chromium: the session keeper's warning banner and "Stay signed in",
the "Your session has ended" state, activity extending at most once a window, the deny
flow (choose a device to end, continue), trusting a device, and screenshots.

The keeper tests move two clocks instead of waiting: the server runs on the tests'
FrozenClock, and the page on Playwright's fake clock (``page.clock``), so "28 minutes
later" takes no time and the 15-second poll fires when told to."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.models import UserSession
from testkit.browser import browser_login, served
from testkit.values import UA_IPAD, UA_MAC_CHROME

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))


@pytest.fixture
def frozen_server(app):
    """The app on the tests' FrozenClock, served for the browser."""
    with served(app) as url:
        yield url


def only_session(services):
    with services.session() as db:
        return db.scalars(select(UserSession)).one()


def test_warning_banner_and_stay_signed_in(
    browser, frozen_server, make, tenant, member, mailbox, services, clock
):
    context = browser.new_context(user_agent=UA_IPAD)
    page = context.new_page()
    page.clock.install()
    browser_login(page, frozen_server, mailbox, member.email)
    page.wait_for_load_state("networkidle")
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)  # Unix seconds
    banner = page.locator("#session-banner")
    assert banner.is_hidden()

    # 28:30 of the 30-minute idle timeout pass with no activity: at the next poll the
    # page learns that 1:30 is left and warns.
    clock.advance(minutes=28, seconds=30)
    page.clock.run_for(15_000)
    banner.wait_for(state="visible")
    countdown = page.locator("#session-countdown").inner_text()
    shown = f"{countdown} {banner.locator('button').inner_text()}"
    assert re.fullmatch(r"You will be signed out in 1:[23]\d — Stay signed in", shown), shown
    # Screen readers hear one sentence when it appears, not every tick of the countdown.
    assert (
        "You will be signed out in about 2 minutes."
        in banner.locator(".visually-hidden").inner_text()
    )

    # "Stay signed in" extends the session on the server and the warning goes away.
    with page.expect_response("**/session/extend") as answer:
        banner.get_by_role("button", name="Stay signed in").click()
    assert answer.value.json()["expiresIn"] == 30 * 60
    banner.wait_for(state="hidden")
    assert only_session(services).idle_deadline == clock.now() + timedelta(minutes=30)

    # Then nobody touches the iPad for 31 minutes: the session has ended, the page says
    # so and offers the way back (it does not yank the page away from a reader).
    clock.advance(minutes=31)
    page.clock.run_for(15_000)
    page.locator("#session-banner.ended").wait_for()
    assert banner.inner_text().startswith(
        "Your session has ended. You were signed out after a period of inactivity."
    )
    link = banner.get_by_role("button", name="Sign in again")
    assert link.get_attribute("href") == "/login?reason=idle_expired"
    assert page.url.endswith("/devices")
    page.clock.resume()
    link.click()
    page.wait_for_url("**/login?reason=idle_expired")
    assert "after a period of inactivity" in page.locator("#signed-out-reason").inner_text()
    assert only_session(services).end_reason == "idle_expired"
    context.close()


def test_activity_extends_at_most_once_a_window(
    browser, frozen_server, member, mailbox, services, clock
):
    context = browser.new_context(user_agent=UA_IPAD)
    page = context.new_page()
    page.clock.install()
    browser_login(page, frozen_server, mailbox, member.email)
    page.wait_for_load_state("networkidle")
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 1)  # Unix seconds
    extends: list[str] = []
    page.on("request", lambda r: extends.append(r.url) if r.url.endswith("/extend") else None)
    signed_in = clock.now()

    # Someone reading and scrolling: a key press every 5 seconds for three minutes.
    for _ in range(36):
        page.keyboard.press("Shift")
        clock.advance(seconds=5)
        page.clock.run_for(5_000)
    page.wait_for_load_state("networkidle")

    assert 2 <= len(extends) <= 3, extends  # one a minute, whatever the key rate
    session = only_session(services)
    assert session.last_seen_at > signed_in + timedelta(minutes=1)
    assert session.idle_deadline == session.last_seen_at + timedelta(minutes=30)
    context.close()


def test_deny_flow_pick_a_device_to_end_and_continue(browser, live_server, live_make, mailbox):
    tenant = live_make.tenant("theatre")
    live_make.policy(tenant, max_sessions_per_user=2, limit_mode="deny")
    live_make.user("noor@theatre.test", tenant)
    desk = browser.new_context(user_agent=UA_MAC_CHROME)
    ipad = browser.new_context(user_agent=UA_IPAD)
    a, b = desk.new_page(), ipad.new_page()
    browser_login(a, live_server, mailbox, "noor@theatre.test")
    browser_login(b, live_server, mailbox, "noor@theatre.test")

    phone = browser.new_context(
        user_agent=UA_IPAD.replace("iPad; CPU OS", "iPhone; CPU iPhone OS"),
        viewport={"width": 390, "height": 844},
    )
    c = phone.new_page()
    before = mailbox.count("noor@theatre.test")
    c.goto(f"{live_server}/login")
    c.fill("#email", "noor@theatre.test")
    c.click("button[type=submit]")
    c.wait_for_url("**/login/code")
    c.fill("#code", mailbox.last_code("noor@theatre.test", before + 1))
    c.click("form button[type=submit]")

    c.get_by_role("heading", name="Too many sessions").wait_for()
    assert "You already have 2 active sessions" in c.content()
    SHOTS.mkdir(parents=True, exist_ok=True)
    c.screenshot(path=str(SHOTS / "limit-choose-phone.png"), full_page=True)
    c.get_by_label(re.compile("Chrome on macOS")).check()
    c.get_by_role("button", name="End it and sign in").click()
    c.wait_for_url("**/devices")
    assert "The session you chose was ended." in c.content()
    assert c.locator("article.device").count() == 2  # the phone and the iPad

    # The desktop's next page load is the sign-in page, with the reason.
    a.goto(f"{live_server}/devices")
    a.wait_for_url("**/login?reason=revoked_by_user**")
    assert "signed out from another device" in a.locator("#signed-out-reason").inner_text()
    b.goto(f"{live_server}/devices")
    assert b.url.endswith("/devices")
    for context in (desk, ipad, phone):
        context.close()


def test_deny_flow_cancel(browser, live_server, live_make, mailbox):
    tenant = live_make.tenant("clinic")
    live_make.policy(tenant, max_sessions_per_user=1, limit_mode="deny")
    live_make.user("ade@clinic.test", tenant)
    one, two = browser.new_context(), browser.new_context(user_agent=UA_IPAD)
    a, b = one.new_page(), two.new_page()
    browser_login(a, live_server, mailbox, "ade@clinic.test")
    before = mailbox.count("ade@clinic.test")
    b.goto(f"{live_server}/login")
    b.fill("#email", "ade@clinic.test")
    b.click("button[type=submit]")
    b.wait_for_url("**/login/code")
    b.fill("#code", mailbox.last_code("ade@clinic.test", before + 1))
    b.click("form button[type=submit]")
    b.get_by_role("button", name="Cancel").click()
    b.wait_for_url(re.compile(r".*/login$"))
    assert "Sign-in cancelled" in b.content()
    a.reload()
    assert a.url.endswith("/devices")
    one.close()
    two.close()


def test_trust_this_device_and_screenshots(browser, live_server, live_make, mailbox):
    """Trust a device from /devices (htmx, no reload): its own card turns trusted and says
    when it signs out; screenshots of /devices and of /admin/policy."""
    tenant = live_make.tenant("hospital")
    live_make.user("sarah@hospital.test", tenant, role="admin")
    desk = browser.new_context(user_agent=UA_MAC_CHROME, viewport={"width": 1200, "height": 900})
    ipad = browser.new_context(user_agent=UA_IPAD, viewport={"width": 820, "height": 1180})
    a, b = desk.new_page(), ipad.new_page()
    browser_login(a, live_server, mailbox, "sarah@hospital.test")
    browser_login(b, live_server, mailbox, "sarah@hospital.test")

    b.evaluate("window.__sameDocument = true")
    card = b.locator("article.device.current")
    assert card.locator(".badge.trusted").count() == 0
    b.get_by_role("button", name="Trust this device").click()
    card.locator(".badge.trusted").wait_for()  # the card itself turns trusted
    assert b.evaluate("window.__sameDocument") is True
    assert "This device is trusted until" in b.locator("#device-notice").inner_text()
    assert "Safari on iOS" in card.inner_text() and "Trusted until" in card.inner_text()
    assert "Signs out after 8 hours without use (trusted device)" in card.inner_text()
    assert b.locator("#trusted").count() == 0  # no second list of the same device
    assert b.get_by_role("button", name="Trust this device").count() == 0

    a.reload()
    SHOTS.mkdir(parents=True, exist_ok=True)
    a.screenshot(path=str(SHOTS / "devices-trusted-desktop.png"), full_page=True)
    b.screenshot(path=str(SHOTS / "devices-trusted-ipad.png"), full_page=True)
    a.goto(f"{live_server}/admin/policy")
    a.get_by_role("heading", name="Session policy").wait_for()
    a.screenshot(path=str(SHOTS / "admin-policy.png"), full_page=True)

    # A mistake is explained next to the field, and nothing is saved.
    a.fill("#idle_timeout", "0")
    a.get_by_role("button", name="Save policy").click()
    a.locator("#idle_timeout-error").wait_for()
    assert (
        "Idle timeout must be 1 minute to 30 days." in a.locator("#idle_timeout-error").inner_text()
    )
    a.screenshot(path=str(SHOTS / "admin-policy-error.png"), full_page=True)
    desk.close()
    ipad.close()
