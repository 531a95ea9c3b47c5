"""Whole journeys in Chromium: sign in twice, end one browser's session from the other."""

from __future__ import annotations

import os
import re
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


def test_one_card_per_device_with_its_trust(browser, live_server, live_make, mailbox):
    """Issue 23, points 2 and 3, in Chromium: trusting the iPad in hand turns its own card
    trusted (with when it will sign out and why), without a reload; on the desk there is
    one card per device, one "Stop trusting", and two iPads told apart; ending the
    trusted iPad's session leaves its card (trusted, no session) and stopping trust then
    takes it away, each without a reload. Screenshots at 1280 and 390 px."""
    tenant = live_make.tenant("ward")
    live_make.user("ada@ward.test", tenant)
    desk = browser.new_context(user_agent=UA_MAC_CHROME, viewport={"width": 1280, "height": 900})
    ward = browser.new_context(user_agent=UA_IPAD, viewport={"width": 820, "height": 1180})
    spare = browser.new_context(user_agent=UA_IPAD, viewport={"width": 820, "height": 1180})
    a, b, c = desk.new_page(), ward.new_page(), spare.new_page()
    for page in (a, b, c):
        browser_login(page, live_server, mailbox, "ada@ward.test")

    # The iPad trusts itself: its card changes in place.
    own = b.locator("article.device.current")
    assert "Signs out after 30 minutes without use, at " in own.inner_text()
    assert "signs out only after 8 hours without use" in own.inner_text()
    b.evaluate("window.__sameDocument = true")
    own.get_by_role("button", name="Trust this device").click()
    b.locator("#device-notice", has_text="This device is trusted until").wait_for()
    own.locator(".badge.trusted").wait_for()
    assert "Signs out after 8 hours without use (trusted device), at " in own.inner_text()
    assert "at the latest" in own.inner_text()
    assert b.get_by_role("button", name="Trust this device").count() == 0
    assert b.evaluate("window.__sameDocument") is True

    # On the desk: three devices, three cards, trust shown once, the iPads told apart.
    a.reload()
    cards = a.locator("article.device")
    assert cards.count() == 3
    assert a.locator("#trusted").count() == 0
    assert a.get_by_role("button", name=re.compile("^Stop trusting")).count() == 1
    names = [cards.nth(n).locator("h2").inner_text() for n in range(3)]
    assert names[0] == "Chrome on macOS"
    ipads = sorted(names[1:])
    assert ipads[0] != ipads[1]
    assert all(name.startswith("Safari on iOS · added ") for name in ipads), names
    trusted = a.locator("article.device", has=a.locator(".badge.trusted"))
    trusted_name = trusted.locator("h2").inner_text()
    assert "(trusted device)" in trusted.inner_text()

    SHOTS.mkdir(parents=True, exist_ok=True)
    a.screenshot(path=str(SHOTS / "devices-cards-1280.png"), full_page=True)
    a.set_viewport_size({"width": 390, "height": 844})
    assert a.evaluate("document.documentElement.scrollWidth") == 390
    a.screenshot(path=str(SHOTS / "devices-cards-390.png"), full_page=True)
    a.set_viewport_size({"width": 1280, "height": 900})

    # End the trusted iPad's session: its card stays, trusted, with no session in it.
    a.evaluate("window.__sameDocument = true")
    trusted.get_by_role("button", name=f"End session on {trusted_name}").click()
    assert trusted_name in confirm_in_page(a)
    trusted.locator("li.session.empty", has_text="Not signed in on this device now.").wait_for()
    assert cards.count() == 3
    assert a.get_by_role("button", name=f"Stop trusting {trusted_name}").count() == 1
    # Stopping trust on a device nobody is signed in on takes its card away.
    a.get_by_role("button", name=f"Stop trusting {trusted_name}").click()
    a.locator("#device-notice", has_text="is no longer trusted").wait_for()
    trusted.wait_for(state="detached")
    assert cards.count() == 2
    assert a.get_by_role("button", name=re.compile("^Stop trusting")).count() == 0
    # The other iPad is alone with its name again.
    assert cards.nth(1).locator("h2").inner_text() == "Safari on iOS"
    assert a.evaluate("window.__sameDocument") is True
    for context in (desk, ward, spare):
        context.close()
