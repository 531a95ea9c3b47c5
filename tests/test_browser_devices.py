"""Whole journeys in Chromium: sign in twice, end one browser's session from the other."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit.browser import browser_login, confirm_in_page
from testkit.values import UA_IPAD, UA_MAC_CHROME

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("HOLDFAST_SCREENSHOTS", "test-results/screenshots"))


def test_end_another_browser_session_live(browser, live_server, live_make, mailbox):
    tenant = live_make.tenant("clinic")
    live_make.user("sarah@clinic.test", tenant, role="admin")  # the widest site header
    desk = browser.new_context(user_agent=UA_MAC_CHROME, viewport={"width": 1200, "height": 800})
    ipad = browser.new_context(user_agent=UA_IPAD, viewport={"width": 820, "height": 1180})
    a, b = desk.new_page(), ipad.new_page()
    browser_login(a, live_server, mailbox, "sarah@clinic.test")
    browser_login(b, live_server, mailbox, "sarah@clinic.test")

    a.reload()
    cards = a.locator("article.device")
    assert cards.count() == 2
    assert a.locator("article.device.current h2").inner_text() == "Chrome on macOS"
    ipad_card = a.locator("article.device", has_text="Safari on iOS")
    assert "Tablet" in ipad_card.inner_text()

    SHOTS.mkdir(parents=True, exist_ok=True)
    a.screenshot(path=str(SHOTS / "devices-desktop.png"), full_page=True)
    phone = browser.new_context(user_agent=UA_IPAD, viewport={"width": 390, "height": 844})
    phone.add_cookies(desk.cookies())
    phone_page = phone.new_page()
    phone_page.goto(f"{live_server}/devices")
    phone_page.screenshot(path=str(SHOTS / "devices-phone.png"), full_page=True)
    for width in (390, 360):  # nothing runs past the edge: no sideways scrolling
        phone_page.set_viewport_size({"width": width, "height": 844})
        assert phone_page.evaluate("document.documentElement.scrollWidth") == width
        box = phone_page.get_by_role("button", name="Sign out", exact=True).bounding_box()
        assert box is not None and box["x"] + box["width"] <= width
    phone.close()

    # End the iPad's session with the htmx button: the card goes, the page does not reload.
    a.evaluate("window.__sameDocument = true")
    ipad_card.get_by_role("button", name="End session on Safari on iOS").click()
    assert "Safari on iOS" in confirm_in_page(a)
    ipad_card.wait_for(state="detached")
    assert a.evaluate("window.__sameDocument") is True
    assert a.locator("article.device").count() == 1

    # The iPad's next navigation lands on the sign-in page, with the reason.
    b.goto(f"{live_server}/devices")
    b.wait_for_url("**/login**")
    assert (
        "You were signed out from another device." in b.locator("#signed-out-reason").inner_text()
    )
    desk.close()
    ipad.close()


def test_signed_out_tab_learns_by_itself(browser, live_server, live_make, mailbox):
    """A tab whose session was ended elsewhere reaches /login without a click."""
    tenant = live_make.tenant("ward")
    live_make.user("ade@ward.test", tenant)
    one, two = browser.new_context(), browser.new_context(user_agent=UA_IPAD)
    a, b = one.new_page(), two.new_page()
    browser_login(a, live_server, mailbox, "ade@ward.test")
    browser_login(b, live_server, mailbox, "ade@ward.test")
    a.reload()
    a.get_by_role("button", name="Sign out all other sessions").click()
    confirm_in_page(a)
    a.locator("article.device").nth(1).wait_for(state="detached")
    # The polling script (every 15 s) takes the idle tab to /login.
    b.wait_for_url("**/login?reason=revoked_by_user**", timeout=25_000)
    assert "signed out from another device" in b.locator("#signed-out-reason").inner_text()
    one.close()
    two.close()
